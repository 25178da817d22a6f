package rtc

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// FastEgress writes one viewer session's RTP to the edge's socket itself: an interceptor
// innermost in the session's chain (every other interceptor, sender reports, transport-wide
// numbering and pacing included, has seen the packet) protects it with the session's own
// SRTP context (SRTPKeys: the node answers as DTLS server) and queues it in the edge's batch
// for the selected ICE pair's remote address. Pion's SRTP session and ICE connection are
// skipped: their locks, their per-packet bookkeeping and the mux between them. RTCP, DTLS
// and ICE stay with pion (its keepalives cover the pair pion no longer writes RTP to).
// Until the keys and the pair are known (before DTLS is done pion drops RTP anyway) and
// if they cannot be derived, packets take pion's path.
type FastEgress struct {
	conn   *batchConn
	keys   *SRTPKeys
	counts *fastEgressCounts

	mu     sync.Mutex // guards what follows; no I/O under it
	ctx    *srtp.Context
	failed bool // the keys could not be derived: pion's path for good
	route  netip.AddrPort
	plain  []byte
	hdr    rtp.Header
}

// fastEgressCounts count what an edge's FastEgresses did.
type fastEgressCounts struct{ packets, failed atomic.Uint64 }

// FastEgressStats count the RTP packets viewers were sent by the fast path and those it
// could not protect (each then refused, as pion's path would have).
type FastEgressStats struct{ Packets, Failed uint64 }

// FastEgressStats returns the counters of every FastEgress of the edge.
func (e *Edge) FastEgressStats() FastEgressStats {
	return FastEgressStats{Packets: e.fastEgress.packets.Load(), Failed: e.fastEgress.failed.Load()}
}

// Viewers makes a viewing session's PeerConnection; *Edge is one.
type Viewers interface {
	NewViewer() (*webrtc.PeerConnection, error)
}

// NewViewer is a PeerConnection for a viewing session (WHEP): with Config.FastEgress, one
// of its own API whose RTP the edge protects and sends itself (FastEgress), else one of
// API's. Room sessions, which publish and view, take NewPublisher's.
func (e *Edge) NewViewer() (*webrtc.PeerConnection, error) {
	if !e.fastEgressOn {
		pc, err := e.API.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return nil, fmt.Errorf("rtc: new peer connection: %w", err)
		}
		return pc, nil
	}
	f := &FastEgress{conn: e.conn, keys: &SRTPKeys{}, counts: &e.fastEgress}
	api, err := e.keyedAPI(f.keys, []interceptor.Factory{egressFactory{f: f}}, nil)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(keyedConfiguration)
	if err != nil {
		return nil, fmt.Errorf("rtc: new peer connection: %w", err)
	}
	// The viewer's media goes to the selected pair's remote address, which ICE may change
	// after the first selection.
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		if addr, err := pairAddr(p); err == nil {
			f.routeTo(addr)
		}
	})
	return pc, nil
}

// routeTo sends what f is given to addr from now on; a nil f does nothing.
func (f *FastEgress) routeTo(addr netip.AddrPort) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.route = addr
	f.mu.Unlock()
}

// keyedConfiguration is the configuration of the PeerConnections whose SRTP the edge
// protects or opens itself: without RTP header encryption (RFC 9335 cryptex, which pion
// would otherwise use with a peer offering it), which the edge's own contexts do not do.
var keyedConfiguration = webrtc.Configuration{RTPHeaderEncryptionPolicy: webrtc.RTPHeaderEncryptionPolicyDisable}

// plainPool holds the buffers a packet is protected into, taken and given back per packet so
// that the write to the socket happens outside the lock.
var plainPool = sync.Pool{New: func() any { b := make([]byte, 0, batchSlot+64); return &b }}

// write protects and queues one packet, or hands it to pion's path (next) while the fast
// path cannot take it.
func (f *FastEgress) write(h *rtp.Header, payload []byte, a interceptor.Attributes, next interceptor.RTPWriter) (int, error) {
	f.mu.Lock()
	if f.ctx == nil && !f.failed {
		f.contextLocked()
	}
	ctx, route := f.ctx, f.route
	if ctx == nil || !route.IsValid() {
		f.mu.Unlock()
		return next.Write(h, payload, a)
	}
	hl := h.MarshalSize()
	f.plain = f.plain[:hl]
	_, err := h.MarshalTo(f.plain)
	f.plain = append(f.plain, payload...)
	bp := plainPool.Get().(*[]byte)
	var out []byte
	if err == nil {
		// EncryptRTP reads the header again from the packet, into f.hdr (no allocation).
		out, err = ctx.EncryptRTP((*bp)[:0], f.plain, &f.hdr)
	}
	f.mu.Unlock()
	if err != nil {
		plainPool.Put(bp)
		f.counts.failed.Add(1)
		return 0, fmt.Errorf("rtc: fast egress: protect: %w", err)
	}
	n, err := f.conn.WriteToAddrPort(out, route)
	*bp = out[:0]
	plainPool.Put(bp)
	if err != nil {
		return n, fmt.Errorf("rtc: fast egress: send: %w", err)
	}
	f.counts.packets.Add(1)
	return len(payload) + h.MarshalSize(), nil
}

// contextLocked makes the node's SRTP context once the handshake has given its keys (under
// mu). Keys that cannot be derived (the node was the DTLS client, an unknown suite) leave
// the session on pion's path.
func (f *FastEgress) contextLocked() {
	k, err := f.keys.Keying()
	if errors.Is(err, ErrNoSRTPKeys) {
		return
	}
	if err == nil {
		f.ctx, err = k.NodeContext()
	}
	if err != nil {
		f.failed = true
		return
	}
	if f.plain == nil {
		f.plain = make([]byte, batchSlot)
	}
}

// egressFactory makes the innermost interceptor of a FastEgress's session.
type egressFactory struct{ f *FastEgress }

func (e egressFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &egressTap{f: e.f}, nil
}

// egressTap binds each local stream's writer to its FastEgress.
type egressTap struct {
	interceptor.NoOp
	f *FastEgress
}

func (t *egressTap) BindLocalStream(_ *interceptor.StreamInfo, next interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		return t.f.write(h, payload, a, next)
	})
}
