package rtcclient

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// answerer is a WHIP and WHEP endpoint made of pion answering PeerConnections: a real peer
// for the client's sessions, without the server's packages (this package is a client). Its
// WHEP side answers 409 to the first conflicts offers, then sends a VP8 key frame and delta
// frames; its WHIP side counts the video packets it receives.
type answerer struct {
	t         *testing.T
	api       *webrtc.API
	conflicts atomic.Int32
	received  atomic.Int64
	deleted   atomic.Int32
	token     string

	mu   sync.Mutex
	pcs  []*webrtc.PeerConnection
	stop chan struct{} // closed by close: the senders end
	wg   sync.WaitGroup
}

func (a *answerer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+a.token {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	if r.Method == http.MethodDelete {
		a.deleted.Add(1)
		return
	}
	whep := r.URL.Path == "/whep/room"
	if whep && a.conflicts.Add(-1) >= 0 {
		http.Error(w, "nothing published yet", http.StatusConflict)
		return
	}
	offer, _ := io.ReadAll(r.Body)
	// Failures are the test's (t.Errorf: this is not the test's goroutine) and a 500.
	failed := func(err error) bool {
		if err != nil {
			a.t.Errorf("answerer: %v", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		return err != nil
	}
	pc, err := a.api.NewPeerConnection(webrtc.Configuration{})
	if failed(err) {
		return
	}
	a.mu.Lock()
	a.pcs = append(a.pcs, pc)
	a.mu.Unlock()
	if whep {
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "answerer")
		if failed(err) {
			return
		}
		if _, err = pc.AddTrack(track); failed(err) {
			return
		}
		connected := make(chan struct{})
		var once sync.Once
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			if s == webrtc.PeerConnectionStateConnected {
				once.Do(func() { close(connected) })
			}
		})
		a.wg.Go(func() { sendFrames(track, connected, a.stop) })
	} else {
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				if tr.Kind() == webrtc.RTPCodecTypeVideo {
					a.received.Add(1)
				}
			}
		})
	}
	if failed(pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)})) {
		return
	}
	answer, err := pc.CreateAnswer(nil)
	if failed(err) {
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if failed(pc.SetLocalDescription(answer)) {
		return
	}
	<-gathered
	w.Header().Set("Location", r.URL.Path+"/session")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, pc.LocalDescription().SDP)
}

// sendFrames sends a VP8 key frame every 25 frames and delta frames between, every 20 ms
// from when the connection is up until closed.
func sendFrames(track *webrtc.TrackLocalStaticRTP, connected, closed <-chan struct{}) {
	select {
	case <-connected:
	case <-closed:
		return
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := uint16(0); ; i++ {
		select {
		case <-closed:
			return
		case <-tick.C:
		}
		payload := []byte{0x10, 0x01, 0x00} // a delta frame's first packet
		if i%25 == 0 {
			payload[1] = 0x00 // a key frame
		}
		_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: i, Timestamp: uint32(i) * 1800}, Payload: payload})
	}
}

func (a *answerer) close() {
	close(a.stop)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, pc := range a.pcs {
		_ = pc.Close()
	}
	a.wg.Wait()
}

func newAnswerer(t *testing.T) (*answerer, string) {
	api, err := NewAPI()
	require.NoError(t, err)
	a := &answerer{t: t, api: api, token: "secret", stop: make(chan struct{})}
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		srv.Close()
		a.close()
	})
	return a, srv.URL
}

// The test publisher's packets reach the peer, a keyframe request is not needed for it to
// send, and Close DELETEs the session and ends every goroutine (TestMain checks).
func TestPublishThenClose(t *testing.T) {
	a, url := newAnswerer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	api, err := NewAPI()
	require.NoError(t, err)
	_, err = Publish(ctx, api, url, "room")
	var he *HTTPError
	require.ErrorAs(t, err, &he, "no token")
	require.Equal(t, http.StatusUnauthorized, he.Status)

	p, err := Publish(ctx, api, url, "room", WithToken(a.token))
	require.NoError(t, err)
	require.Equal(t, url+"/whip/room/session", p.Location)
	require.Eventually(t, func() bool { return a.received.Load() >= 10 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, p.Close(true))
	require.Equal(t, int32(1), a.deleted.Load())
	require.NoError(t, p.Close(true), "idempotent")
	require.Equal(t, int32(1), a.deleted.Load())
}

// A viewer retries while the endpoint answers 409, then counts packets and key frames; one
// that gives up wraps ErrNotPublished.
func TestPlayRetriesAndCountsKeyFrames(t *testing.T) {
	a, url := newAnswerer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	api, err := NewAPI(LightReceiver())
	require.NoError(t, err)

	a.conflicts.Store(1 << 20)
	// Long enough for a first 409 on a loaded machine; the tries then go on until it ends.
	short, stop := context.WithTimeout(ctx, 2*time.Second)
	_, err = Play(short, api, url, "room", WithToken(a.token))
	stop()
	require.ErrorIs(t, err, ErrNotPublished)
	require.True(t, IsNotPublished(err))

	a.conflicts.Store(2)
	v, err := Play(ctx, api, url, "room", WithToken(a.token))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return v.KeyFrames() >= 2 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, webrtc.MimeTypeVP8, v.VideoCodec())
	require.Greater(t, v.Video.Load(), v.KeyFrames(), "delta frames are not counted as key frames")
	require.NoError(t, v.Close())
	require.Equal(t, int32(1), a.deleted.Load())
}
