package rtc

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// RTPReader is where a published track's RTP comes from; *webrtc.TrackRemote is one.
type RTPReader interface {
	Read(b []byte) (int, interceptor.Attributes, error)
}

// RTPSender takes one RTP packet on toward the track's viewers; *mediabus.TrackSender is one.
type RTPSender interface {
	Send(pkt []byte) error
}

// RTPCounters count what ReadRTP moved, with atomics (no lock, no allocation per packet).
type RTPCounters struct {
	// Packets and Bytes count RTP read from publishers (bytes: whole RTP packets).
	Packets, Bytes atomic.Uint64
	// Dropped counts packets read but not sent on.
	Dropped atomic.Uint64
}

// ReadRTP is the one RTP read loop of the node's publishers (WHIP and room sessions): it moves
// src's packets unchanged to dst until src ends (its PeerConnection closed). While paused
// reports true (the track was unpublished) packets are read and dropped, so pion's buffers do
// not fill. n may be nil.
func ReadRTP(src RTPReader, dst RTPSender, paused *atomic.Bool, n *RTPCounters) {
	if n == nil {
		n = &RTPCounters{}
	}
	buf := make([]byte, 1500)
	for {
		k, _, err := src.Read(buf)
		if err != nil {
			return
		}
		if paused != nil && paused.Load() {
			continue
		}
		n.Packets.Add(1)
		n.Bytes.Add(uint64(k))
		if err := dst.Send(buf[:k]); err != nil {
			n.Dropped.Add(1)
		}
	}
}

// Keyframes asks a publishing PeerConnection for keyframes (PLI) of its tracks, by track id.
// A simulcast track has one SSRC per layer; a request asks every layer, because the request
// on the feedback subject does not say which layer the viewer (or its pending switch) needs.
type Keyframes struct {
	// Sent, if set, counts the PLIs written.
	Sent *atomic.Uint64

	mu   sync.Mutex
	ssrc map[string][]webrtc.SSRC
}

// Add records the SSRC of a published track (or of one of its simulcast layers).
func (k *Keyframes) Add(track string, ssrc webrtc.SSRC) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ssrc == nil {
		k.ssrc = map[string][]webrtc.SSRC{}
	}
	if !slices.Contains(k.ssrc[track], ssrc) {
		k.ssrc[track] = append(k.ssrc[track], ssrc)
	}
}

// Owns reports whether track is one of the PeerConnection's published tracks.
func (k *Keyframes) Owns(track string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.ssrc[track]
	return ok
}

// Request sends a PLI for each layer of track on s's PeerConnection; an OnPLI of a
// publishing session.
func (k *Keyframes) Request(s *Session, track string) {
	k.mu.Lock()
	ssrcs := slices.Clone(k.ssrc[track])
	k.mu.Unlock()
	if len(ssrcs) == 0 {
		return
	}
	pkts := make([]rtcp.Packet, len(ssrcs))
	for i, ssrc := range ssrcs {
		pkts[i] = &rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}
	}
	if err := s.PC.WriteRTCP(pkts); err != nil {
		s.Log.Debug("PLI not sent", "track", track, "err", err)
		return
	}
	if k.Sent != nil {
		k.Sent.Add(uint64(len(pkts)))
	}
}

// FeedbackSender sends RTCP toward a track's publisher; *mediabus.MediaBus is one.
type FeedbackSender interface {
	SendFeedback(room, track string, rtcp []byte) error
}

// pli is a marshalled PLI: the node that receives it on a track's feedback subject asks the
// publisher with the track's own SSRC, so the media SSRC here does not matter.
var pli = func() []byte {
	b, err := (&rtcp.PictureLossIndication{}).Marshal()
	if err != nil {
		panic(err)
	}
	return b
}()

// AskPublisher sends a keyframe request for track toward its publisher, wherever it is; an
// OnPLI of a receiving session.
func AskPublisher(fb FeedbackSender, s *Session, track string) {
	if err := fb.SendFeedback(s.Room, track, pli); err != nil {
		s.Log.Debug("keyframe request not sent", "track", track, "err", err)
	}
}
