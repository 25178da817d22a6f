package rtcclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Option configures a session: its token and HTTP client.
type Option func(*options)

type options struct {
	token       string
	hc          *http.Client
	onConnected func()
	encodings   map[int][]webrtc.TrackLocal
}

// WithToken sends token as the bearer token (Authorization: Bearer) of the POST and of the
// session's DELETE.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithHTTPClient sends the session's requests with hc (default: http.DefaultClient).
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithConnected calls fn once the session's PeerConnection is connected (ICE and DTLS done).
func WithConnected(fn func()) Option { return func(o *options) { o.onConnected = fn } }

// WithSimulcast sends the WHIP track at index track in simulcast: its track (made with
// webrtc.WithRTPStreamID) is the first layer, more are the further ones, each with a RID of
// its own, lowest first.
func WithSimulcast(track int, more ...webrtc.TrackLocal) Option {
	return func(o *options) {
		if o.encodings == nil {
			o.encodings = map[int][]webrtc.TrackLocal{}
		}
		o.encodings[track] = append(o.encodings[track], more...)
	}
}

func collect(opts []Option) options {
	o := options{hc: http.DefaultClient}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Session is one WHIP or WHEP session: its PeerConnection, its URL on the server, and the
// goroutines that serve it (reading its senders' RTCP, reading its tracks), which Close
// waits for.
type Session struct {
	PC       *webrtc.PeerConnection
	Location string
	opts     options

	mu      sync.Mutex // guards closing against a track arriving (wg.Add)
	closing bool
	wg      sync.WaitGroup
	once    sync.Once
	err     error
}

// StartWHIP publishes tracks at a WHIP endpoint (baseURL/whip/room). Every sender's RTCP is
// read (pion's interceptors need that); onRTCP, if not nil, gets the packets and the index of
// the track they are about.
func StartWHIP(ctx context.Context, api *webrtc.API, endpoint string, tracks []webrtc.TrackLocal,
	onRTCP func(track int, pkts []rtcp.Packet), opts ...Option) (*Session, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("rtcclient: %w", err)
	}
	s := &Session{PC: pc, opts: collect(opts)}
	for i, t := range tracks {
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, s.abort(fmt.Errorf("rtcclient: add track: %w", err))
		}
		sender := tr.Sender()
		read := []func() ([]rtcp.Packet, error){func() ([]rtcp.Packet, error) { p, _, err := sender.ReadRTCP(); return p, err }}
		if more := s.opts.encodings[i]; len(more) > 0 {
			read = nil // each layer's RTCP (its PLIs) is read apart
			for _, layer := range append([]webrtc.TrackLocal{t}, more...) {
				if layer != t {
					if err := sender.AddEncoding(layer); err != nil {
						return nil, s.abort(fmt.Errorf("rtcclient: add simulcast layer %s: %w", layer.RID(), err))
					}
				}
				rid := layer.RID()
				read = append(read, func() ([]rtcp.Packet, error) { p, _, err := sender.ReadSimulcastRTCP(rid); return p, err })
			}
		}
		for _, r := range read {
			s.wg.Go(func() {
				for {
					pkts, err := r()
					if err != nil {
						return
					}
					if onRTCP != nil {
						onRTCP(i, pkts)
					}
				}
			})
		}
	}
	if s.Location, err = Exchange(ctx, s.opts.hc, pc, endpoint, s.opts.token); err != nil {
		return nil, s.abort(err)
	}
	return s, nil
}

// StartWHEP plays kinds of tracks from a WHEP endpoint (baseURL/whep/room). onTrack runs for
// each track on pion's goroutine and should read it until it fails; Close waits for it. A
// 409 (nothing published yet) is an *HTTPError: see UntilPublished.
func StartWHEP(ctx context.Context, api *webrtc.API, endpoint string, kinds []webrtc.RTPCodecType,
	onTrack func(*webrtc.TrackRemote), opts ...Option) (*Session, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("rtcclient: %w", err)
	}
	s := &Session{PC: pc, opts: collect(opts)}
	if fn := s.opts.onConnected; fn != nil {
		var once sync.Once
		pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
			if st == webrtc.PeerConnectionStateConnected {
				once.Do(fn)
			}
		})
	}
	for _, k := range kinds {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return nil, s.abort(fmt.Errorf("rtcclient: add transceiver: %w", err))
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return
		}
		s.wg.Add(1)
		s.mu.Unlock()
		defer s.wg.Done()
		onTrack(tr)
	})
	if s.Location, err = Exchange(ctx, s.opts.hc, pc, endpoint, s.opts.token); err != nil {
		return nil, s.abort(err)
	}
	return s, nil
}

// abort closes a session that did not start and returns err.
func (s *Session) abort(err error) error {
	_ = s.Close(false)
	return err
}

// Close ends the session: DELETE on its URL if leave (else the connection is just dropped,
// as by a client that vanished), then closes the PeerConnection and waits for the session's
// goroutines. It is idempotent.
func (s *Session) Close(leave bool) error {
	s.once.Do(func() {
		if leave && s.Location != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.err = Delete(ctx, s.opts.hc, s.Location, s.opts.token)
			cancel()
		}
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.err = errors.Join(s.err, s.PC.Close())
		s.wg.Wait()
	})
	return s.err
}

// KeyFrameRequests counts the keyframe requests (PLI, FIR) among pkts.
func KeyFrameRequests(pkts []rtcp.Packet) int {
	n := 0
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			n++
		}
	}
	return n
}
