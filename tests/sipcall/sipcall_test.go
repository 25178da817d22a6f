// Package sipcall tests the SIP gateway end to end with a real SIP phone: baresip (Debian's),
// driven through its ctrl_tcp command interface, with its aufile microphone and sndfile
// recorder. Its own package, so that CI can run it beside ./tests.
package sipcall

import (
	"context"
	"crypto/rand"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/ingress/sip"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/schemas"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

var testKey = auth.Key{ID: "test", Secret: []byte("jetmedia-sip-tests-secret-0123456789abcdef")}

const (
	sipUser, sipPass = "alice", "s3cret-pass"
	roomHz, phoneHz  = 440.0, 1000.0
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("JETMEDIA_TEST_LOG") != "1" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// startSIPNode is a node on loopback with the SIP gateway on a free port and one account.
func startSIPNode(t *testing.T) *app.Node {
	t.Helper()
	return startNode(t, sipConfig(t))
}

func sipConfig(t *testing.T) app.Config {
	cfg := app.Defaults()
	cfg.Name = "sipnode"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPHost, cfg.UDPPort = "127.0.0.1", 0
	cfg.Logger = testLogger(t)
	cfg.AuthKeys = []auth.Key{testKey}
	cfg.SIP = app.SIPConfig{Listen: "127.0.0.1:0", Users: []string{sipUser + ":" + sipPass}}
	return cfg
}

func startNode(t *testing.T, cfg app.Config) *app.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := app.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	require.Equal(t, cfg.SIP.Listen != "", n.SIPAddr() != "")
	return n
}

func token(t *testing.T, room, identity string, grants ...auth.Grant) string {
	t.Helper()
	k, err := auth.NewKeyring(testKey)
	require.NoError(t, err)
	tok, err := k.Sign(auth.NewClaims(room, identity, grants, time.Now(), time.Hour))
	require.NoError(t, err)
	return tok
}

func loadOpus(t *testing.T) *sip.OpusLib {
	t.Helper()
	lib, err := sip.LoadOpus("")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("libopus is required under CI: %v", err)
		}
		t.Skipf("SKIP (loud): %v", err)
	}
	return lib
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// publishTone publishes an Opus tone of hz into room over WHIP, as a pion publisher, until the
// test ends.
func publishTone(t *testing.T, node *app.Node, room string, lib *sip.OpusLib, hz float64) {
	t.Helper()
	api, err := rtcclient.NewAPI()
	require.NoError(t, err)
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "tone")
	require.NoError(t, err)
	sess, err := rtcclient.StartWHIP(ctxT(t, 20*time.Second), api, node.HTTPURL()+"/whip/"+room, []webrtc.TrackLocal{track}, nil,
		rtcclient.WithToken(token(t, room, "tone-publisher", auth.Publish)))
	require.NoError(t, err)
	enc, err := lib.NewEncoder()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		pcm := make([]int16, sip.FrameSamples)
		buf := make([]byte, 1500)
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			for i := range pcm {
				pcm[i] = int16(8000 * sinAt(hz, n*sip.FrameSamples+i))
			}
			pkt, err := enc.Encode(pcm, buf)
			if err == nil {
				_ = track.WriteSample(media.Sample{Data: pkt, Duration: 20 * time.Millisecond})
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		enc.Close()
		_ = sess.Close(true)
	})
}

// listener decodes what a WHEP viewer of one peer hears.
type listener struct {
	mu  sync.Mutex
	pcm []int16
}

func (l *listener) samples() []int16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int16(nil), l.pcm...)
}

// listen plays peer's audio in room over WHEP and decodes it.
func listen(t *testing.T, node *app.Node, room, peer string, lib *sip.OpusLib) *listener {
	t.Helper()
	api, err := rtcclient.NewAPI()
	require.NoError(t, err)
	dec, err := lib.NewDecoder()
	require.NoError(t, err)
	l := &listener{}
	sess, err := rtcclient.StartWHEP(ctxT(t, 20*time.Second), api, node.HTTPURL()+"/whep/"+room+"/"+peer,
		[]webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}, func(tr *webrtc.TrackRemote) {
			buf := make([]byte, 1500)
			pcm := make([]int16, 8000)
			var p rtp.Packet
			for {
				n, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				if p.Unmarshal(buf[:n]) != nil || len(p.Payload) == 0 {
					continue
				}
				out, err := dec.Decode(p.Payload, pcm)
				if err != nil {
					continue
				}
				l.mu.Lock()
				l.pcm = append(l.pcm, out...)
				l.mu.Unlock()
			}
		}, rtcclient.WithToken(token(t, room, "room-listener", auth.Subscribe)))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = sess.Close(true)
		dec.Close()
	})
	return l
}

// sipPeer waits for the room's SIP caller and its audio track.
func sipPeer(t *testing.T, node *app.Node, room string) string {
	t.Helper()
	var peer string
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctxT(t, 5*time.Second), node.Rooms(), room)
		if err != nil {
			return false
		}
		for id, p := range r.Peers {
			if p.Transport != events.TransportSIP {
				continue
			}
			for _, tr := range r.Tracks {
				if tr.Peer == id && tr.Kind == "audio" {
					peer = id
					return true
				}
			}
		}
		return false
	}, 15*time.Second, 50*time.Millisecond)
	return peer
}

func roomEvents(t *testing.T, node *app.Node, room string) []events.Envelope {
	t.Helper()
	var out []events.Envelope
	err := eventlog.Read(ctxT(t, 10*time.Second), node.JetStream(), eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter(room)}, func(e events.Envelope) error {
		out = append(out, e)
		return nil
	})
	require.NoError(t, err)
	return out
}

func payload(t *testing.T, e events.Envelope) events.Payload {
	t.Helper()
	p, err := e.Payload()
	require.NoError(t, err)
	return p
}

func newRoom(prefix string) string { return prefix + "-" + strings.ToLower(rand.Text()[:8]) }

// TestSIPCallBaresip: baresip calls into a room where a pion publisher sends an Opus 440 Hz
// tone. The phone's recording holds that tone; a WHEP viewer of the caller hears the phone's
// 1000 Hz tone; key presses are dtmf.received events; the phone's hang-up ends the peer
// (reason closed) and it leaves the room.
func TestSIPCallBaresip(t *testing.T) {
	bin := requireBaresip(t)
	lib := loadOpus(t)
	node := startSIPNode(t)
	room := newRoom("sip")
	publishTone(t, node, room, lib, roomHz)

	phone := startBaresip(t, bin, sipUser, sipPass, phoneHz)
	phone.command("dial", "sip:"+room+"@"+node.SIPAddr())
	phone.waitEvent("CALL_ESTABLISHED", 20*time.Second)
	peer := sipPeer(t, node, room)
	heard := listen(t, node, room, peer, lib)

	// Let both directions carry a few seconds of audio.
	require.Eventually(t, func() bool { return len(heard.samples()) >= 3*8000 }, 20*time.Second, 100*time.Millisecond,
		"the room's viewer of the caller got %d samples", len(heard.samples()))

	// Hold and resume (re-INVITEs with sendonly, then sendrecv): the call goes on.
	// And the phone records what it hears before the hold: baresip (1.0) re-creates its
	// player on resume and its recorder gets nothing after that, although the node sends.
	phone.waitRecorded(3*time.Second, 30*time.Second)

	phone.command("hold", "")
	time.Sleep(500 * time.Millisecond)
	phone.command("resume", "")
	time.Sleep(500 * time.Millisecond)
	require.Eventually(t, func() bool {
		n := 0
		for _, e := range phone.eventTypes() {
			require.NotContains(t, e, "CALL_CLOSED", "hold ended the call")
			if strings.HasPrefix(e, "CALL_REMOTE_SDP answer") {
				n++
			}
		}
		return n >= 3 // the call's answer and those of the two re-INVITEs
	}, 5*time.Second, 50*time.Millisecond, "answers to hold and resume: %v", phone.eventTypes())

	phone.command("sndcode", "1")
	time.Sleep(400 * time.Millisecond)
	phone.command("sndcode", "#")
	var digits []string
	require.Eventually(t, func() bool {
		digits = digits[:0]
		for _, e := range roomEvents(t, node, room) {
			if e.Type == events.TypeDTMFReceived {
				digits = append(digits, payload(t, e).(events.DTMFReceived).Digit)
			}
		}
		return len(digits) >= 2
	}, 10*time.Second, 100*time.Millisecond, "dtmf events: %v", digits)
	require.Equal(t, []string{"1", "#"}, digits)

	phone.command("hangup", "")
	phone.waitEvent("CALL_CLOSED", 10*time.Second)
	require.Eventually(t, func() bool {
		for _, e := range roomEvents(t, node, room) {
			if l, ok := payload(t, e).(events.PeerLeft); ok && l.Peer == peer {
				require.Equal(t, "closed", l.Reason)
				require.Equal(t, events.ByClient, l.Cause.By)
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "peer.left of the caller")
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctxT(t, 5*time.Second), node.Rooms(), room)
		_, present := r.Peers[peer]
		return err == nil && !present
	}, 10*time.Second, 50*time.Millisecond, "the caller is gone from the rooms bucket")

	// What the phone heard: the room's tone, not its own.
	rec, rate := phone.recording()
	require.Equal(t, 8000, rate)
	require.Greater(t, len(rec), 2*rate, "seconds of recorded call audio")
	rec = rec[rate/2:] // the first half second may be silence before the mix starts
	room440, own1000 := goertzel(rec, rate, roomHz), goertzel(rec, rate, phoneHz)
	t.Logf("phone recording: %d samples, rms %.0f, 440 Hz power %.3g, 1000 Hz power %.3g", len(rec), rms(rec), room440, own1000)
	require.Greater(t, rms(rec), 1000.0, "the phone heard the room's tone")
	require.Greater(t, room440, 50*own1000, "the phone heard the room's 440 Hz tone, not its own")

	// What the room heard from the phone.
	got := heard.samples()[8000:]
	p1000, p440 := goertzel(got, 8000, phoneHz), goertzel(got, 8000, roomHz)
	t.Logf("room's viewer of the caller: %d samples, rms %.0f, 1000 Hz power %.3g, 440 Hz power %.3g", len(got), rms(got), p1000, p440)
	require.Greater(t, rms(got), 1000.0, "the room heard the phone's tone")
	require.Greater(t, p1000, 50*p440, "the room heard the phone's 1000 Hz tone")

	requireSchemaValid(t, node)
}

// TestSIPWrongCredentials: a phone with a wrong password is refused (401, then 403 for the
// wrong answer) and nothing is recorded.
func TestSIPWrongCredentials(t *testing.T) {
	bin := requireBaresip(t)
	loadOpus(t)
	node := startSIPNode(t)
	room := newRoom("sipbad")
	phone := startBaresip(t, bin, sipUser, "wrong-password", phoneHz)
	phone.command("dial", "sip:"+room+"@"+node.SIPAddr())
	closed := phone.waitEvent("CALL_CLOSED", 20*time.Second)
	t.Logf("baresip: %v", closed["param"])
	require.Regexp(t, `40[13]`, closed["param"])
	stranger := startBaresip(t, bin, "mallory", sipPass, phoneHz)
	stranger.command("dial", "sip:"+room+"@"+node.SIPAddr())
	closed = stranger.waitEvent("CALL_CLOSED", 20*time.Second)
	require.Regexp(t, `40[13]`, closed["param"])
	require.Empty(t, roomEvents(t, node, room), "a refused call records nothing")
}

// TestSIPNodeHangsUp: a call over TCP; when the node stops, the call ends with reason shutdown
// and the phone gets a BYE (the node logs "sip BYE answered" at debug level, "sip BYE not answered" else).
func TestSIPNodeHangsUp(t *testing.T) {
	bin := requireBaresip(t)
	loadOpus(t)
	cfg := sipConfig(t)
	node := startNode(t, cfg)
	room := newRoom("sipend")
	phone := startBaresip(t, bin, sipUser, sipPass, phoneHz)
	// Over TCP: the INVITE, the digest round and the node's BYE.
	phone.command("dial", "sip:"+room+"@"+node.SIPAddr()+";transport=tcp")
	phone.waitEvent("CALL_ESTABLISHED", 20*time.Second)
	peer := sipPeer(t, node, room)
	require.NoError(t, node.Close())
	// libre reports a BYE it received as "Connection reset by peer".
	closed := phone.waitEvent("CALL_CLOSED", 10*time.Second)
	t.Logf("baresip: %v", closed["param"])
	// Read the log back with a node on the same data (no gateway).
	cfg.SIP = app.SIPConfig{}
	again := startNode(t, cfg)
	var left *events.PeerLeft
	for _, e := range roomEvents(t, again, room) {
		if l, ok := payload(t, e).(events.PeerLeft); ok && l.Peer == peer {
			left = &l
		}
	}
	require.NotNil(t, left, "peer.left of the caller")
	require.Equal(t, "shutdown", left.Reason)
}

func sinAt(hz float64, i int) float64 {
	return math.Sin(2 * math.Pi * hz * float64(i) / sip.SampleRate)
}

func requireSchemaValid(t *testing.T, node *app.Node) {
	t.Helper()
	v, err := schemas.New()
	require.NoError(t, err)
	err = eventlog.Read(ctxT(t, 20*time.Second), node.JetStream(), eventlog.ReadOptions{Filter: eventlog.EventsSubjects}, func(e events.Envelope) error {
		raw, err := events.Encode(e)
		require.NoError(t, err)
		require.NoError(t, v.ValidateEvent(raw), "event %d %s", e.Seq, raw)
		return nil
	})
	require.NoError(t, err)
}
