package forward

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Track is a pion TrackLocal fed by the node's Hub: once pion binds it to a client's transport,
// the published track's packets are rewritten to the negotiated SSRC and payload type and
// written to that client. WHEP viewers and room SDK subscribers both use it.
type Track struct {
	Hub *Hub
	// Room and TrackID name the published track; Stream is the stream (publisher) it belongs to.
	Room, TrackID, Stream string
	// MediaKind is "audio" or "video"; Codec the published MIME type and Fmtp its fmtp line.
	MediaKind, Codec, Fmtp string
	// TopAudio puts an audio track behind its room's choice of the loudest tracks on this node
	// (Hub.Audio, AttachAudio): room subscribers, who receive every publisher's audio, set it;
	// a WHEP viewer, who chose one publisher, does not.
	TopAudio bool
	// Layers are the track's simulcast layers, lowest first; empty: the single layer.
	Layers []string
	// Choose picks the layer for the viewer's target; nil: ChooseLayer.
	Choose Chooser
	// OnBound runs once packets flow to the client unless they began with the track's cached
	// key frame (request a keyframe there, so a new client sees a picture at once: a video
	// client's packets wait for it), naming the simulcast layer the client starts on ("" for
	// a track without simulcast).
	OnBound func(layer string)
	// OnKeyframeRequest runs for the client's PLI and FIR, naming the layer the client is
	// on, and while a layer switch waits for a key frame, naming the layer it waits for
	// ("" for a track without simulcast).
	OnKeyframeRequest func(layer string)
	// OnLayer, if set, runs after the viewer's layer changed (at the new layer's key frame).
	OnLayer func(layer string)

	mu     sync.Mutex
	out    *Output
	fan    *Fanout
	detach func()
	layer  string      // the layer the output is attached to
	target LayerTarget // what the layer is chosen from

	// sw serialises layer changes (held across Hub calls, never while t.mu is).
	sw      sync.Mutex
	pending string      // the layer a switch waits for, "" when none
	cancel  func() bool // drops the pending switch
	retry   *time.Timer // asks again for a key frame while the switch waits
	tries   int
}

// keyframeRetry is how often a switch that waits for a key frame asks again (a request may
// fall in the publisher's PLI throttle), and maxKeyframeRetries how often at most.
const (
	keyframeRetry      = 500 * time.Millisecond
	maxKeyframeRetries = 20
)

// ID is the published track's id.
func (t *Track) ID() string { return t.TrackID }

// RID is empty: one layer per track for now.
func (t *Track) RID() string { return "" }

// StreamID groups the track with the others of its publisher.
func (t *Track) StreamID() string { return t.Stream }

// Kind is the pion codec type of the track.
func (t *Track) Kind() webrtc.RTPCodecType {
	if t.MediaKind == "audio" {
		return webrtc.RTPCodecTypeAudio
	}
	return webrtc.RTPCodecTypeVideo
}

// Bind attaches the client to the track's fan-out with its negotiated SSRC and payload type.
func (t *Track) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, ok := MatchCodec(t.Codec, t.Fmtp, ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, fmt.Errorf("forward: the client cannot receive %s: %w", t.Codec, webrtc.ErrUnsupportedCodec)
	}
	out := NewOutput(uint32(ctx.SSRC()), uint8(codec.PayloadType), ctx.WriteStream())
	bindRTX(out, ctx, codec)
	if isKey := KeyframeStart(codec.MimeType); isKey != nil && t.Kind() == webrtc.RTPCodecTypeVideo {
		// A decodable first frame: the cached key frame at once, or the next one.
		out.StartAtKeyframe(isKey)
	}
	if err := t.bind(ctx.ID(), out); err != nil {
		return webrtc.RTPCodecParameters{}, err
	}
	return codec, nil
}

// bind attaches out to the layer the target chooses and puts it under the hub's congestion
// control as the viewer's sender.
func (t *Track) bind(sender string, out *Output) error {
	t.sw.Lock()
	defer t.sw.Unlock()
	t.mu.Lock()
	layer := t.chooseLocked()
	t.mu.Unlock()
	topAudio := t.TopAudio && t.Kind() == webrtc.RTPCodecTypeAudio
	fan, detach, err := t.Hub.attach(t.Room, t.TrackID, layer, out, topAudio)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.out, t.fan, t.detach, t.layer = out, fan, detach, layer
	t.mu.Unlock()
	t.Hub.congestionControl().add(sender, t, out, fan)
	if t.OnBound != nil && out.isKey == nil {
		t.OnBound(t.SimulcastLayer())
	} // else when the viewer's transport is up (ReadRTCP), unless the cache served it
	return nil
}

// Unbind stops the track's packets to the client.
func (t *Track) Unbind(webrtc.TrackLocalContext) error {
	t.Detach()
	return nil
}

// Detach stops the track's packets to the client; it is idempotent.
func (t *Track) Detach() {
	t.sw.Lock()
	t.dropSwitch()
	t.sw.Unlock()
	t.mu.Lock()
	detach, out := t.detach, t.out
	t.detach, t.out, t.fan = nil, nil, nil
	t.mu.Unlock()
	t.Hub.congestionControl().remove(out)
	if detach != nil {
		detach()
	}
}

// ReadRTCP answers the client's feedback until the sender stops: NACKs from the node's packet
// cache, PLI and FIR through OnKeyframeRequest. A video client's packets start here first,
// once the track is bound and the client's DTLS is done.
func (t *Track) ReadRTCP(sender *webrtc.RTPSender) {
	t.startWhenConnected(sender)
	lost := make([]uint16, 0, 64)
	buf := make([]byte, 1500)
	for {
		n, _, err := sender.Read(buf)
		if err != nil {
			return
		}
		if !answerable(buf[:n]) {
			continue // reports and transport-wide feedback: parsing them would only allocate
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				lost = lost[:0]
				for _, pair := range p.Nacks {
					pair.Range(func(seq uint16) bool { lost = append(lost, seq); return true })
				}
				t.mu.Lock()
				fan, out := t.fan, t.out
				t.mu.Unlock()
				if fan != nil {
					fan.Retransmit(out, lost)
				}
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				if t.OnKeyframeRequest != nil {
					t.OnKeyframeRequest(t.SimulcastLayer())
				}
			}
		}
	}
}

// answerable reports whether a compound RTCP packet holds something ReadRTCP answers: a
// NACK (RTPFB 1), a PLI (PSFB 1) or a FIR (PSFB 4). A viewer's RTCP is mostly receiver
// reports and, ten times a second, transport-wide feedback, which pion's ReadRTCP would
// parse into fresh objects (and a fresh buffer) each time.
func answerable(compound []byte) bool {
	for len(compound) >= 4 {
		pt, f := rtcp.PacketType(compound[1]), compound[0]&0x1f
		if (pt == rtcp.TypeTransportSpecificFeedback && f == rtcp.FormatTLN) ||
			(pt == rtcp.TypePayloadSpecificFeedback && (f == rtcp.FormatPLI || f == rtcp.FormatFIR)) {
			return true
		}
		compound = compound[min(4*((int(compound[2])<<8|int(compound[3]))+1), len(compound)):]
	}
	return false
}

// startPoll is how often startWhenConnected looks at the client's transport, and startWithin
// how long at most: then the client's packets start anyway (one whose DTLS never completes
// is ended by its session's connect timeout first).
const (
	startPoll   = time.Millisecond
	startWithin = 30 * time.Second
)

// startWhenConnected waits until the track is bound and sender's DTLS transport connected
// (pion drops what is written before: a key frame sent then is lost, and the client waits
// for the next), then starts a video client's packets: the track's cached key frame at once,
// or a key frame asked for (OnBound) and waited for. pion has no event for it that several
// tracks of one connection could each wait on, so the transport's state is polled; a client
// connects within tens of milliseconds, which is tens of polls.
func (t *Track) startWhenConnected(sender *webrtc.RTPSender) {
	tick := time.NewTicker(startPoll)
	defer tick.Stop()
	deadline := time.Now().Add(startWithin)
	for {
		t.mu.Lock()
		fan, out, bound := t.fan, t.out, t.detach != nil
		t.mu.Unlock()
		if bound && out.isKey == nil {
			return // started at Bind
		}
		tr := sender.Transport()
		if tr == nil || time.Now().After(deadline) {
			if bound && !fan.start(out) && t.OnBound != nil { // play it anyway
				t.OnBound(t.SimulcastLayer())
			}
			return
		}
		switch tr.State() {
		case webrtc.DTLSTransportStateFailed, webrtc.DTLSTransportStateClosed:
			return // the connection ended (closing it stops its DTLS transport)
		case webrtc.DTLSTransportStateConnected:
			if bound {
				if !fan.start(out) && t.OnBound != nil {
					t.OnBound(t.SimulcastLayer())
				}
				return
			}
		}
		<-tick.C
	}
}

// MatchCodec picks the client's negotiated codec for a published one: the same MIME type,
// preferring the same fmtp line (H.264 profile and packetization mode).
func MatchCodec(mime, fmtp string, offered []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var fallback *webrtc.RTPCodecParameters
	for i, c := range offered {
		if !strings.EqualFold(c.MimeType, mime) {
			continue
		}
		if c.SDPFmtpLine == fmtp {
			return c, true
		}
		if fallback == nil {
			fallback = &offered[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}

// Layer is the layer the viewer receives now ("" before Bind).
func (t *Track) Layer() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.layer
}

// SimulcastLayer is the layer the client is on, "" for a track without simulcast.
func (t *Track) SimulcastLayer() string {
	if len(t.Layers) == 0 {
		return ""
	}
	return t.Layer()
}

// current is the fan-out the viewer is attached to, its layer and target.
func (t *Track) current() (*Fanout, string, LayerTarget) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fan, t.layer, t.target
}

// Target is the viewer's current layer target.
func (t *Track) Target() LayerTarget {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.target
}

// SetTarget changes what the viewer's layer is chosen from and, when that changes the
// layer, switches to it at the new layer's next key frame (asking the publisher for one).
// A bandwidth estimator calls it with Bitrate set; the viewer's signalling with Manual, Width
// and Height.
func (t *Track) SetTarget(update func(*LayerTarget)) error {
	t.sw.Lock()
	defer t.sw.Unlock()
	t.mu.Lock()
	update(&t.target)
	want, cur, out := t.chooseLocked(), t.layer, t.out
	t.mu.Unlock()
	if out == nil || want == t.pending || (want == cur && t.pending == "") {
		return nil // not bound yet (Bind chooses), or nothing changes
	}
	t.dropSwitch()
	if want == cur {
		return nil
	}
	codec := t.Codec
	cancel, err := t.Hub.Switch(t.Room, t.TrackID, cur, want, out,
		func(pkt []byte) bool { return SwitchPoint(codec, pkt) },
		func(f *Fanout, detach func()) { t.switched(want, f, detach) })
	if err != nil {
		return fmt.Errorf("forward: switch %s to layer %s: %w", t.TrackID, want, err)
	}
	t.pending, t.cancel, t.tries = want, cancel, 0
	t.askKeyframe()
	return nil
}

// ChooseLayer applies a viewer's choice (signal.LayerChooser): quality is the manual layer
// ("" automatic), width and height the rendered size; nil leaves each as it was.
func (t *Track) ChooseLayer(quality *string, width, height *int) error {
	return t.SetTarget(func(lt *LayerTarget) {
		if quality != nil {
			lt.Manual = *quality
		}
		if width != nil {
			lt.Width = *width
		}
		if height != nil {
			lt.Height = *height
		}
	})
}

// switched runs on the new layer's delivery goroutine once the output moved.
func (t *Track) switched(layer string, f *Fanout, detach func()) {
	t.mu.Lock()
	t.fan, t.detach, t.layer = f, detach, layer
	t.mu.Unlock()
	if t.OnLayer != nil {
		t.OnLayer(layer)
	}
}

// askKeyframe requests a key frame for a pending switch and plans the next request (t.sw
// held, or the retry timer's goroutine).
func (t *Track) askKeyframe() {
	if t.OnKeyframeRequest != nil {
		t.OnKeyframeRequest(t.pending)
	}
	t.retry = time.AfterFunc(keyframeRetry, func() {
		t.sw.Lock()
		defer t.sw.Unlock()
		if t.pending == "" || t.Layer() == t.pending {
			t.pending, t.cancel, t.retry = "", nil, nil
			return
		}
		if t.tries++; t.tries < maxKeyframeRetries {
			t.askKeyframe()
		}
	})
}

// dropSwitch cancels a pending switch (t.sw held).
func (t *Track) dropSwitch() {
	if t.retry != nil {
		t.retry.Stop()
	}
	if t.cancel != nil {
		t.cancel()
	}
	t.pending, t.cancel, t.retry = "", nil, nil
}

// chooseLocked is the layer the target asks for (t.mu held).
func (t *Track) chooseLocked() string {
	if len(t.Layers) == 0 {
		return SingleLayer
	}
	choose := t.Choose
	if choose == nil {
		choose = ChooseLayer
	}
	if l := choose(t.Layers, t.target); slices.Contains(t.Layers, l) {
		return l
	}
	return t.Layers[len(t.Layers)-1]
}
