package rtc

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"

	"github.com/jetmedia/jetmedia/pipeline/bwe"
)

// twccSeq holds every 16-bit number big-endian: a packet's transport-cc extension payload is
// a slice of it, so numbering a packet allocates nothing (pion's header-extension interceptor
// marshals two fresh bytes per packet). Read-only after init.
var twccSeq = func() *[2 << 16]byte {
	var t [2 << 16]byte
	for i := range 1 << 16 {
		binary.BigEndian.PutUint16(t[2*i:], uint16(i))
	}
	return &t
}()

// twccFactory makes a twccEstimator per PeerConnection.
type twccFactory struct {
	set *Estimates
	cfg bwe.Config
}

// NewInterceptor registers the PeerConnection's estimator under its id.
func (f *twccFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	e := &twccEstimator{set: f.set, pc: id, origin: time.Now(), est: bwe.New(f.cfg)}
	f.set.mu.Lock()
	f.set.byPC[id] = e
	f.set.mu.Unlock()
	return e, nil
}

// twccEstimator is the node's own congestion control of one PeerConnection (pipeline/bwe):
// it numbers every packet the connection sends with a transport-wide sequence number,
// records when it left and how large it was, and takes the viewer's transport-wide
// feedback from the RTCP the connection reads. The per-packet part is an atomic increment,
// a clock read and three atomic stores; a feedback message is parsed in place and updates
// the estimate under a lock that only feedback and the allocator's reads take. No
// goroutine: the estimate moves when feedback arrives.
type twccEstimator struct {
	interceptor.NoOp
	set    *Estimates
	pc     string
	origin time.Time // monotonic origin of the send and feedback times
	next   atomic.Uint32
	hist   bwe.History
	// rate is the estimate in bit/s as of the last feedback, for the connection's pacer: 0
	// (no pacing) until the first feedback. Before it the estimate is a guess (the initial
	// 1 Mbit/s), and what a new viewer is sent then is its cache replay (the newest key frame
	// and what followed): pacing it at the guess held the first frame back ~150 ms against
	// issue 14's 30 ms. A viewer that sends no feedback has no estimate to pace by.
	rate atomic.Int64
	// congested is the estimate's Congested as of the last feedback.
	congested atomic.Bool
	// Malformed counts feedback messages that did not parse.
	malformed atomic.Uint64

	mu      sync.Mutex
	est     *bwe.Estimator
	streams []string
}

// BindLocalStream numbers the stream's packets, when the viewer negotiated transport-cc.
func (e *twccEstimator) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	var id uint8
	for _, x := range info.RTPHeaderExtensions {
		if x.URI == sdp.TransportCCURI && x.ID > 0 && x.ID < 256 {
			id = uint8(x.ID)
		}
	}
	if id == 0 {
		return w
	}
	e.set.mu.Lock()
	e.set.byStream[info.ID] = e
	e.set.mu.Unlock()
	e.mu.Lock()
	e.streams = append(e.streams, info.ID)
	e.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		seq := uint16(e.next.Add(1) - 1)
		// The writer's header is its own to change (forward's lanes keep room for one
		// extension, so this does not allocate either).
		if err := h.SetExtension(id, twccSeq[2*int(seq):2*int(seq)+2]); err != nil {
			return 0, fmt.Errorf("rtc: transport-cc extension: %w", err)
		}
		e.hist.Sent(seq, time.Since(e.origin), h.MarshalSize()+len(payload))
		return w.Write(h, payload, a)
	})
}

// UnbindLocalStream forgets the stream.
func (e *twccEstimator) UnbindLocalStream(info *interceptor.StreamInfo) {
	e.set.mu.Lock()
	if e.set.byStream[info.ID] == connEstimator(e) {
		delete(e.set.byStream, info.ID)
	}
	e.set.mu.Unlock()
	e.mu.Lock()
	e.streams = slices.DeleteFunc(e.streams, func(s string) bool { return s == info.ID })
	e.mu.Unlock()
}

// BindRTCPReader taps the connection's RTCP for transport-wide feedback, reading it where
// it lies.
func (e *twccEstimator) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		e.rtcp(b[:n])
		return n, attr, nil
	})
}

// rtcp takes every transport-wide feedback message of a compound RTCP packet.
func (e *twccEstimator) rtcp(compound []byte) {
	for len(compound) >= 4 {
		n := 4 * (int(binary.BigEndian.Uint16(compound[2:4])) + 1)
		if n > len(compound) {
			return
		}
		if bwe.IsFeedback(compound) {
			e.feedback(compound[:n])
		}
		compound = compound[n:]
	}
}

func (e *twccEstimator) feedback(pkt []byte) {
	fb, err := bwe.ParseFeedback(pkt)
	if err != nil {
		e.malformed.Add(1)
		return
	}
	now := time.Since(e.origin)
	e.mu.Lock()
	e.est.OnFeedback(now, &fb, &e.hist)
	est := e.est.Estimate(now)
	e.mu.Unlock()
	e.congested.Store(est.Congested)
	e.rate.Store(int64(est.Bitrate))
}

func (e *twccEstimator) estimate() Estimate {
	now := time.Since(e.origin)
	e.mu.Lock()
	est := e.est.Estimate(now)
	e.mu.Unlock()
	return Estimate{Bitrate: est.Bitrate, LossBitrate: est.LossBitrate, DelayBitrate: est.DelayBitrate,
		Loss: est.Loss, Congested: est.Congested, Connection: e.pc, Feedbacks: est.Feedbacks}
}

func (e *twccEstimator) sending() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.streams) > 0
}

// Close forgets the PeerConnection.
func (e *twccEstimator) Close() error {
	e.set.mu.Lock()
	defer e.set.mu.Unlock()
	if e.set.byPC[e.pc] == connEstimator(e) {
		delete(e.set.byPC, e.pc)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.streams {
		if e.set.byStream[s] == connEstimator(e) {
			delete(e.set.byStream, s)
		}
	}
	return nil
}
