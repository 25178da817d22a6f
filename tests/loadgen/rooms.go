package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/jetmedia/jetmedia/ingress/signal/client"
)

// Rooms mode: in each of Config.Rooms rooms, Config.Publishers peers join with the Go SDK and
// publish the same synthetic video (+ audio) as the WHIP publishers, sent by the same
// publisher.send; then Config.Subscribers peers join, spread over the ramp, and auto-subscribe
// to every track of the room. Publishers do not subscribe (they join with manual
// subscription and never ask), so what is measured is one fan-out per published track to the
// room's subscribers, as in WHIP mode, but through the signalling WebSocket and the room's
// one renegotiated PeerConnection per peer.

// rtcURL is the rooms WebSocket of the server at baseURL (the SDK turns http into ws).
func rtcURL(baseURL string) string { return strings.TrimRight(baseURL, "/") + "/rtc" }

// joinError says which room a join failed in, and what to do when it failed for want of a
// token (a server without dev mode mints none).
func joinError(room, token string, err error) error {
	if token == "" {
		return fmt.Errorf("join %s without a token (the server has no dev-mode /dev/token; give --token, valid in room \"*\" with publish,subscribe): %w", room, err)
	}
	return fmt.Errorf("join %s: %w", room, err)
}

// rtcpWatch is an interceptor that shows a publisher the RTCP its PeerConnection receives: the
// SDK reads its senders' RTCP itself and drops it, and the publisher needs the PLIs.
type rtcpWatch struct {
	interceptor.NoOp
	p *publisher
}

func (w *rtcpWatch) NewInterceptor(string) (interceptor.Interceptor, error) { return w, nil }

func (w *rtcpWatch) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := reader.Read(b, a)
		if err != nil {
			return n, a, err
		}
		if a == nil {
			a = interceptor.Attributes{}
		}
		if pkts, perr := a.GetRTCPPackets(b[:n]); perr == nil {
			w.p.watchRTCP(pkts)
		}
		return n, a, err
	})
}

// startRoomPublisher joins room as a publishing peer and publishes the tracks; the caller
// starts sending and waits for the server to name them (published).
func startRoomPublisher(ctx context.Context, loopback bool, baseURL, room, token string, audio bool) (*publisher, error) {
	p, err := newPublisher(room, token, audio, false)
	if err != nil {
		return nil, err
	}
	// An API of its own: its RTCP watch is this publisher's.
	api, err := newAPI(loopback, false, false, &rtcpWatch{p: p})
	if err != nil {
		return nil, err
	}
	p.sdk, err = client.Join(ctx, rtcURL(baseURL), token, client.Options{API: api, Room: room, ManualSubscribe: true})
	if err != nil {
		return nil, joinError(room, token, err)
	}
	p.peer = p.sdk.Self.Peer
	for i, t := range p.tracks() {
		source := "camera"
		if i > 0 {
			source = "mic"
		}
		s, err := p.sdk.PublishWith(t, client.PublishOptions{Source: source})
		if err != nil {
			_ = p.sdk.Close()
			return nil, fmt.Errorf("publish %s in %s: %w", source, room, err)
		}
		p.senders = append(p.senders, s)
	}
	return p, nil
}

// published waits until the server has named every track of p (its track_published): from
// then on a subscriber that joins gets them.
func (p *publisher) published(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, s := range p.senders {
		if _, err := p.sdk.TrackID(ctx, s); err != nil {
			return fmt.Errorf("room %s, peer %s: track not published: %w", p.room, p.peer, err)
		}
	}
	return nil
}

// roomSubscriber is a peer that joins a room with auto-subscription and receives every
// publisher's tracks there.
type roomSubscriber struct {
	sdk    *client.Room
	joinAt time.Time             // when Join was called
	byPeer map[string]*reception // by the publishing peer's id (a remote track's stream id)
	recs   []*reception
	wg     sync.WaitGroup
}

func startRoomSubscriber(ctx context.Context, api *webrtc.API, baseURL, room, token string, pubs []*publisher,
	lat *latencies) (*roomSubscriber, error) {
	s := &roomSubscriber{byPeer: make(map[string]*reception, len(pubs))}
	for _, p := range pubs {
		rc := &reception{pub: p}
		s.byPeer[p.peer] = rc
		s.recs = append(s.recs, rc)
	}
	s.joinAt = time.Now()
	sdk, err := client.Join(ctx, rtcURL(baseURL), token, client.Options{API: api, Room: room})
	if err != nil {
		return nil, joinError(room, token, err)
	}
	s.sdk = sdk
	// Tracks arrive only after the server's offer is answered: well after Join returned.
	sdk.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		s.wg.Add(1)
		defer s.wg.Done()
		rc := s.byPeer[tr.StreamID()]
		if rc == nil {
			// Not one of this run's publishers (someone else in the room): read and drop.
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
			}
		}
		rc.read(tr, lat)
	})
	return s, nil
}

func (s *roomSubscriber) receptions() []*reception { return s.recs }

func (s *roomSubscriber) joinStarted() time.Time { return s.joinAt }

// close leaves the room and waits for the track readers.
func (s *roomSubscriber) close(*http.Client) {
	_ = s.sdk.Leave()
	s.wg.Wait()
}

// publishRooms joins and starts every room's publishers, and waits until the server lists
// their tracks.
func (r *run) publishRooms(ctx, sendCtx context.Context) error {
	c := r.cfg
	for k := range c.Rooms {
		room := fmt.Sprintf("%s-%s-%d", c.Room, r.id, k)
		for i := range c.Publishers {
			tok, err := r.token(ctx, room)
			if err != nil {
				return err
			}
			p, err := startRoomPublisher(ctx, r.loopback, c.URL, room, tok, c.Audio)
			if err != nil {
				return fmt.Errorf("room %d publisher %d: %w", k, i, err)
			}
			r.pubs = append(r.pubs, p)
			p.wg.Go(func() { p.send(sendCtx, c.Bitrate, c.FPS, c.MaxPayload) })
		}
	}
	for _, p := range r.pubs {
		if err := p.published(ctx); err != nil {
			return err
		}
	}
	return nil
}

// joinRoom is the i-th subscriber of the ramp: round-robin over the rooms.
func (r *run) joinRoom(ctx context.Context, i int) (viewer, error) {
	k := i % r.cfg.Rooms
	pubs := r.pubs[k*r.cfg.Publishers : (k+1)*r.cfg.Publishers]
	tok, err := r.token(ctx, pubs[0].room)
	if err != nil {
		return nil, err
	}
	s, err := startRoomSubscriber(ctx, r.viewAPI, r.cfg.URL, pubs[0].room, tok, pubs, &r.lat)
	if err != nil {
		return nil, err
	}
	return s, nil
}
