package app

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/jetmedia/jetmedia/ingress/rtmp"
	"github.com/jetmedia/jetmedia/ingress/sip"
	"github.com/jetmedia/jetmedia/projections"
)

// SIPConfig turns on the SIP gateway (docs/sip.md).
type SIPConfig struct {
	// Listen (host:port, UDP and TCP) accepts calls at sip:<room>@HOST. Empty (the default):
	// no gateway.
	Listen string
	// Domain is the host callers dial and the digest realm ("": any host, realm "jetmedia").
	Domain string
	// Users are the accounts that may call in: user:password or user:password@room.
	Users []string
	// Speakers is how many of a room's loudest tracks a caller hears (default 3).
	Speakers int
}

func (c SIPConfig) validate() error {
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("sip address %q: %w", c.Listen, err)
	}
	if _, err := c.credentials(); err != nil {
		return err
	}
	if c.Speakers < 0 || c.Speakers > sip.MaxMixInputs {
		return fmt.Errorf("sip speakers %d: use 1-%d (0: the default, 3)", c.Speakers, sip.MaxMixInputs)
	}
	return nil
}

func (c SIPConfig) credentials() ([]sip.Credential, error) {
	out := make([]sip.Credential, 0, len(c.Users))
	for _, u := range c.Users {
		cr, err := sip.ParseCredential(u)
		if err != nil {
			return nil, err
		}
		out = append(out, cr)
	}
	return out, nil
}

// startIngress starts the non-WebRTC ingress servers that are configured: RTMP, SIP.
func (n *Node) startIngress() error {
	if n.cfg.RTMPAddr != "" {
		var err error
		if n.rtmp, err = rtmp.Listen(rtmp.Config{Listen: n.cfg.RTMPAddr, Sessions: n.sessions, Bus: n.bus, Auth: n.keys,
			Audio: n.cfg.RTMPAudio, Logger: n.log}); err != nil {
			return err
		}
	}
	return n.startSIP()
}

// startSIP starts the SIP gateway when it is configured; a room's audio tracks come from the
// rooms projection.
func (n *Node) startSIP() error {
	c := n.cfg.SIP
	if c.Listen == "" {
		return nil
	}
	users, err := c.credentials()
	if err != nil {
		return err
	}
	if len(users) == 0 {
		n.log.Warn("sip gateway without accounts (--sip-users): every call is refused")
	}
	tracks := sip.TracksFunc(func(ctx context.Context, room string) ([]sip.RoomTrack, error) {
		r, err := projections.LoadRoom(ctx, n.rooms, room)
		if err != nil {
			return nil, err
		}
		var out []sip.RoomTrack
		for _, id := range r.TrackIDs() {
			if t := r.Tracks[id]; t.Kind == "audio" {
				out = append(out, sip.RoomTrack{Track: t.Track, Peer: t.Peer, Codec: t.Codec})
			}
		}
		return out, nil
	})
	if n.sip, err = sip.Listen(sip.Config{Listen: c.Listen, Domain: c.Domain, Users: users, Speakers: c.Speakers,
		Sessions: n.sessions, Bus: n.bus, Tracks: tracks, Logger: n.log}); err != nil {
		return fmt.Errorf("%w (change --sip-listen)", err)
	}
	return nil
}

// SIPAddr is the SIP gateway's address (host:port), "" when it is off.
func (n *Node) SIPAddr() string {
	if n.sip == nil {
		return ""
	}
	return n.sip.Addr().String()
}

// registerSIP serves the SIP gateway's dial endpoint (admin grant; 404 while the gateway is off).
func (n *Node) registerSIP(mux *http.ServeMux) {
	sip.DialAPI{Server: n.sip, Authorize: n.authorizeAdmin, Logger: n.log}.Register(mux)
}
