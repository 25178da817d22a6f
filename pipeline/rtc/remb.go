package rtc

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// rembInterval is how often a publisher is told its cap: browsers keep a REMB limit only
// while REMBs keep coming (libwebrtc forgets one after a few seconds of silence).
const rembInterval = time.Second

// rembFactory makes the interceptor that holds publishers to a maximum bit rate with REMB
// (the goog-remb feedback every video codec of the edge advertises): a PeerConnection that
// receives media gets, once a second, a REMB naming every stream it sends with the cap.
// Browsers and OBS keep their whole send rate under the latest REMB they received.
type rembFactory struct {
	bitrate float32
}

func (f *rembFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &rembInterceptor{f: f, stop: make(chan struct{})}, nil
}

// rembInterceptor is one PeerConnection's: its goroutine starts with the first remote
// stream and ends with Close.
type rembInterceptor struct {
	interceptor.NoOp
	f *rembFactory

	mu      sync.Mutex
	w       interceptor.RTCPWriter
	ssrcs   []uint32
	started bool
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

func (r *rembInterceptor) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	r.mu.Lock()
	r.w = w
	r.mu.Unlock()
	return w
}

func (r *rembInterceptor) BindRemoteStream(info *interceptor.StreamInfo, rd interceptor.RTPReader) interceptor.RTPReader {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ssrcs = append(r.ssrcs, info.SSRC)
	if !r.started && !r.closed {
		r.started = true
		r.wg.Go(r.run)
	}
	return rd
}

func (r *rembInterceptor) UnbindRemoteStream(info *interceptor.StreamInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, s := range r.ssrcs {
		if s == info.SSRC {
			r.ssrcs = append(r.ssrcs[:i], r.ssrcs[i+1:]...)
			break
		}
	}
}

// run sends the cap at once (a publisher starts high and should not overshoot for long),
// then every rembInterval.
func (r *rembInterceptor) run() {
	t := time.NewTicker(rembInterval)
	defer t.Stop()
	for {
		r.send()
		select {
		case <-t.C:
		case <-r.stop:
			return
		}
	}
}

func (r *rembInterceptor) send() {
	r.mu.Lock()
	w := r.w
	pkt := &rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: r.f.bitrate, SSRCs: append([]uint32(nil), r.ssrcs...)}
	r.mu.Unlock()
	if w == nil || len(pkt.SSRCs) == 0 {
		return
	}
	// An error is a closing transport; the next tick or Close settles it.
	_, _ = w.Write([]rtcp.Packet{pkt}, nil)
}

func (r *rembInterceptor) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.stop)
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}
