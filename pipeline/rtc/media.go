package rtc

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// EndReadsOnClose makes s's end also end the reads of one of its published tracks (tr's RTP
// and rcv's RTCP for tr's layer), with a read deadline in the past, before its PeerConnection
// closes. Closing the PeerConnection stops the receiver, which should end them; a read of a
// room publisher's track once stayed blocked in pion's SRTP read stream after its session and
// PeerConnection had closed (TestBrowserRoomResumeExpired, a tab that joined again after its
// session expired), and the node's shutdown waited on it for good.
func EndReadsOnClose(s *Session, tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
	s.OnClose(func() {
		now := time.Now()
		_ = tr.SetReadDeadline(now)
		if rid := tr.RID(); rid != "" {
			_ = rcv.SetReadDeadlineSimulcast(now, rid)
		} else {
			_ = rcv.SetReadDeadline(now)
		}
	})
}

// ReadPublisherRTCP reads what a publisher sends about one of its streams (rid names a
// simulcast layer, "" a single one) until the stream ends. The node needs nothing from it
// itself, but pion's receiver-report interceptor learns the publisher's sender reports only
// from reads: unread, the node's receiver reports carried no LSR/DLSR and the publisher could
// not measure its round-trip time to the node (a browser's estimator and NACK timing use it).
// Reads are raw: only packets holding a sender report are parsed (senderReportsOnly).
func ReadPublisherRTCP(rcv *webrtc.RTPReceiver, rid string) {
	buf := make([]byte, 1500)
	for {
		var err error
		if rid == "" {
			_, _, err = rcv.Read(buf)
		} else {
			_, _, err = rcv.ReadSimulcast(buf, rid)
		}
		if err != nil {
			return
		}
	}
}

// Keyframes asks a publishing PeerConnection for keyframes (PLI) of its tracks, by track id
// or by LayerKey: a simulcast track has one SSRC per layer, and a request that names a
// layer asks only that layer (the one a viewer is on or switching to), so a switch up does
// not make every layer send a keyframe; a request without a layer asks every layer.
type Keyframes struct {
	// Sent, if set, counts the PLIs written.
	Sent *atomic.Uint64

	mu   sync.Mutex
	ssrc map[string][]layerSSRC
}

// layerSSRC is one layer of a published track and its SSRC.
type layerSSRC struct {
	layer string
	ssrc  webrtc.SSRC
}

// LayerKey names one simulcast layer of track in a keyframe request (Output.PLI, OnPLI):
// track alone when layer is empty or SingleLayer.
func LayerKey(track, layer string) string {
	if layer == "" || layer == SingleLayer {
		return track
	}
	return track + layerSep + layer
}

// SplitLayerKey is LayerKey's inverse: the track and the layer ("" for every layer).
func SplitLayerKey(key string) (track, layer string) {
	track, layer, _ = strings.Cut(key, layerSep)
	return track, layer
}

// layerSep joins a track id and a layer in a LayerKey; neither holds it (ids are subject
// tokens, RIDs alphanumeric).
const layerSep = "/"

// Add records the SSRC of a published track's layer (SingleLayer or "" for a track without
// simulcast).
func (k *Keyframes) Add(track, layer string, ssrc webrtc.SSRC) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ssrc == nil {
		k.ssrc = map[string][]layerSSRC{}
	}
	l := layerSSRC{layer: layer, ssrc: ssrc}
	if !slices.Contains(k.ssrc[track], l) {
		k.ssrc[track] = append(k.ssrc[track], l)
	}
}

// Owns reports whether the track of key is one of the PeerConnection's published tracks.
func (k *Keyframes) Owns(key string) bool {
	track, _ := SplitLayerKey(key)
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.ssrc[track]
	return ok
}

// Request sends a PLI for the layer key names, or for each layer of its track when it
// names none or one not published (yet); an OnPLI of a publishing session.
func (k *Keyframes) Request(s *Session, key string) {
	pkts := k.plis(key)
	if len(pkts) == 0 {
		return
	}
	if err := s.PC.WriteRTCP(pkts); err != nil {
		s.Log.Debug("PLI not sent", "track", key, "err", err)
		return
	}
	if k.Sent != nil {
		k.Sent.Add(uint64(len(pkts)))
	}
}

// plis builds the PLIs a request for key sends.
func (k *Keyframes) plis(key string) []rtcp.Packet {
	track, layer := SplitLayerKey(key)
	k.mu.Lock()
	layers := slices.Clone(k.ssrc[track])
	k.mu.Unlock()
	if i := slices.IndexFunc(layers, func(l layerSSRC) bool { return l.layer == layer }); layer != "" && i >= 0 {
		layers = layers[i : i+1]
	}
	pkts := make([]rtcp.Packet, len(layers))
	for i, l := range layers {
		pkts[i] = &rtcp.PictureLossIndication{MediaSSRC: uint32(l.ssrc)}
	}
	return pkts
}

// FeedbackSender sends RTCP toward a track's publisher; *mediabus.MediaBus is one.
type FeedbackSender interface {
	// SendFeedback sends rtcp about track's layer ("" for the track as a whole).
	SendFeedback(room, track, layer string, rtcp []byte) error
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

// AskPublisher sends a keyframe request for key (a track, or one of its layers: LayerKey)
// toward its publisher, wherever it is; an OnPLI of a receiving session.
func AskPublisher(fb FeedbackSender, s *Session, key string) {
	track, layer := SplitLayerKey(key)
	if err := fb.SendFeedback(s.Room, track, layer, pli); err != nil {
		s.Log.Debug("keyframe request not sent", "track", key, "err", err)
	}
}
