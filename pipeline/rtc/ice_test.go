package rtc_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// records keeps the log records a session writes.
type records struct {
	mu  sync.Mutex
	got []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rec.Clone())
	return nil
}
func (r *records) WithAttrs(as []slog.Attr) slog.Handler { return &withAttrs{r, as} }
func (r *records) WithGroup(string) slog.Handler         { return r }

// withAttrs adds a logger's attributes to its records.
type withAttrs struct {
	*records
	as []slog.Attr
}

func (w *withAttrs) Handle(ctx context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(w.as...)
	return w.records.Handle(ctx, rec)
}
func (w *withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{w.records, append(append([]slog.Attr{}, w.as...), as...)}
}

// lines renders the records at level or above as "LEVEL msg k=v ...".
func (r *records) lines(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.got {
		if rec.Level < level {
			continue
		}
		var b strings.Builder
		b.WriteString(rec.Level.String() + " " + rec.Message)
		rec.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.Key + "=" + a.Value.String())
			return true
		})
		out = append(out, b.String())
	}
	return out
}

func loopbackAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// A session whose peer never answers ICE checks (it went away after its offer) ends with the
// connect timeout, and its one end line says which candidate pairs were tried. Start and end
// are one INFO line each; nothing at WARN.
func TestSessionNeverConnectsLogsCandidatePairs(t *testing.T) {
	api := loopbackAPI()
	client, err := api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	_, err = client.CreateDataChannel("x", nil)
	require.NoError(t, err)
	offer, err := client.CreateOffer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(client)
	require.NoError(t, client.SetLocalDescription(offer))
	<-gathered
	sdp := client.LocalDescription().SDP
	require.NoError(t, client.Close()) // gone: its candidates answer nothing

	logs := &records{}
	reg, err := rtc.NewRegistry(rtc.RegistryConfig{Appender: &logbook{}, Node: "n1", Logger: slog.New(logs),
		TickInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	defer func() { require.NoError(t, reg.Close()) }()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	l := rtc.NewLifecycle(rtc.Timeouts{Connect: 1500 * time.Millisecond}, rtc.Peer{ID: "p1", Transport: "whip"}, nil)
	s, err := reg.NewSession(rtc.SessionConfig{ID: "p1", Room: "r1", Transport: "whip", Identity: "alice", PC: pc, Core: l})
	require.NoError(t, err)
	_, err = rtc.Answer(context.Background(), pc, sdp, nil)
	require.NoError(t, err)
	now := reg.Now()
	require.NoError(t, s.StepWait(func(rtc.Core) rtc.Output { return l.Answered(now, "", "") }))
	s.Started()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connect timeout did not end the session")
	}
	lines := logs.lines(slog.LevelInfo)
	require.Len(t, lines, 2, "one start and one end line: %q", lines)
	require.True(t, strings.HasPrefix(lines[0], "INFO session started component=sessions transport=whip room=r1 session=p1 identity=alice"), lines[0])
	end := lines[1]
	t.Log(end)
	require.True(t, strings.HasPrefix(end, "INFO session ended reason=timeout duration="), end)
	require.Contains(t, end, "candidate_pairs=[host udp 127.0.0.1:", "the pairs tried, local side first")
	require.Contains(t, end, "transport=whip room=r1 session=p1 identity=alice")
}
