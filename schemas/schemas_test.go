package schemas

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
)

func newValidator(t testing.TB) *Validator {
	t.Helper()
	v, err := New()
	require.NoError(t, err)
	return v
}

// samples holds one valid payload per event type with only the required fields set; full holds
// variants that also set every optional field.
var samples = map[string]events.Payload{
	events.TypeRoomCreated:         events.RoomCreated{Node: "n1"},
	events.TypePeerJoined:          events.PeerJoined{Peer: "p1", Transport: events.TransportWHIP, Role: "publisher", Node: "n1"},
	events.TypePeerLeft:            events.NewPeerLeft("p1", "disconnected"),
	events.TypePeerLeftV1:          events.PeerLeftV1{Peer: "p1", Reason: "disconnected"},
	events.TypeTrackPublished:      events.TrackPublished{Peer: "p1", Track: "t1", Kind: "video", Codec: "video/VP8", ClockRate: 90000, Layers: []string{"0"}},
	events.TypeTrackUnpublished:    events.TrackUnpublished{Peer: "p1", Track: "t1"},
	events.TypeSubscriptionStarted: events.SubscriptionStarted{Peer: "p2", Track: "t1", Publisher: "p1"},
	events.TypeSubscriptionEnded:   events.SubscriptionEnded{Peer: "p2", Track: "t1"},
	events.TypePeerUpdated:         events.PeerUpdated{Peer: "p1"},
	events.TypeTrackUpdated:        events.TrackUpdated{Peer: "p1", Track: "t1"},
	events.TypeSpeakerChanged:      events.SpeakerChanged{Peer: "p1", Track: "t1"},
	events.TypeDTMFReceived:        events.DTMFReceived{Peer: "p1", Digit: "#"},
}

var full = []events.Payload{
	events.PeerJoined{Peer: "p1", Transport: "sip", Role: "viewer", Node: "n1", RemoteAddr: "[2001:db8::1]:5060", UserAgent: "Ümlaut/1.0 (x)"},
	events.PeerJoined{Peer: "p1", Transport: "whip", Role: "publisher", Node: "n1", Identity: "alice@example.com", Name: "Alice Ä."},
	events.TrackPublished{Peer: "p1", Track: "mic_1", Kind: "audio", Codec: "audio/opus", ClockRate: 48000, Channels: 2, FmtpLine: "minptime=10;useinbandfec=1", Layers: []string{"0"}},
	events.TrackPublished{Peer: "p1", Track: "cam-1", Kind: "video", Codec: "video/H264", ClockRate: 90000, FmtpLine: "profile-level-id=42e01f", Layers: []string{"q", "h", "f"}},
	events.PeerLeft{Peer: "p1", Reason: "shutdown", Cause: events.LeaveCause{By: events.ByServer, Detail: "node draining"}},
	events.PeerJoined{Peer: "p1", Transport: "sdk", Role: "viewer", Node: "n1", Identity: "bob", Metadata: `{"seat":3}`},
	events.TrackPublished{Peer: "p1", Track: "t2", Kind: "video", Codec: "video/VP8", ClockRate: 90000, Layers: []string{"0"}, Source: "screen", Muted: true},
	events.PeerUpdated{Peer: "p1", Metadata: "hand raised"},
	events.TrackUpdated{Peer: "p1", Track: "t2", Muted: true},
	events.SpeakerChanged{Peer: "p1", Track: "mic_1", Speaking: true, Level: 127},
}

func encode(t testing.TB, p events.Payload, causation string) []byte {
	t.Helper()
	e, err := events.New(events.Meta{Room: "r1", Actor: "p1", Node: "n1", CausationID: causation, Time: time.Now()}, p)
	require.NoError(t, err)
	b, err := events.Encode(e)
	require.NoError(t, err)
	return b
}

func TestTypesMatchEvents(t *testing.T) {
	v := newValidator(t)
	require.ElementsMatch(t, events.Types(), v.Types(), "every event type needs a schema file and every schema file an event type")
	require.True(t, sortedStrings(v.Types()), "Types must be sorted")
	require.ElementsMatch(t, events.Types(), keys(samples), "add a sample payload for every new type")
}

func TestSchemaFilesPinTheirType(t *testing.T) {
	for _, typ := range newValidator(t).Types() {
		t.Run(typ, func(t *testing.T) {
			b, err := files.ReadFile("events/" + typ + ".json")
			require.NoError(t, err)
			var doc struct {
				Title       string `json:"title"`
				Description string `json:"description"`
				Properties  struct {
					Type struct {
						Const string `json:"const"`
					} `json:"type"`
				} `json:"properties"`
			}
			require.NoError(t, json.Unmarshal(b, &doc))
			require.Equal(t, typ, doc.Properties.Type.Const, "properties.type.const must match the file name")
			require.NotEmpty(t, doc.Title)
			require.NotEmpty(t, doc.Description)
		})
	}
}

func TestValidEvents(t *testing.T) {
	v := newValidator(t)
	type tc struct {
		name string
		raw  []byte
	}
	var cases []tc
	for typ, p := range samples {
		cases = append(cases,
			tc{typ, encode(t, p, "")},
			tc{typ + "/causation", encode(t, p, events.NewID())})
	}
	for i, p := range full {
		cases = append(cases, tc{p.EventType() + "/full" + string(rune('0'+i)), encode(t, p, "")})
	}
	chained := mutate(t, events.TypePeerJoined, func(e, _ map[string]any) { e["prevhash"] = events.Hash([]byte("previous")) })
	cases = append(cases, tc{"prevhash", chained})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, v.ValidateEvent(c.raw), "%s", c.raw)
		})
	}
}

// mutate returns a valid event of type typ with f applied to its decoded JSON object.
func mutate(t testing.TB, typ string, f func(e, data map[string]any)) []byte {
	t.Helper()
	var e map[string]any
	require.NoError(t, json.Unmarshal(encode(t, samples[typ], ""), &e))
	data, _ := e["data"].(map[string]any)
	f(e, data)
	b, err := json.Marshal(e)
	require.NoError(t, err)
	return b
}

func TestInvalidEvents(t *testing.T) {
	v := newValidator(t)
	cases := []struct {
		name string
		typ  string
		f    func(e, data map[string]any)
	}{
		{"missing id", events.TypePeerJoined, func(e, _ map[string]any) { delete(e, "id") }},
		{"empty id", events.TypePeerJoined, func(e, _ map[string]any) { e["id"] = "" }},
		{"missing specversion", events.TypePeerJoined, func(e, _ map[string]any) { delete(e, "specversion") }},
		{"wrong specversion", events.TypePeerJoined, func(e, _ map[string]any) { e["specversion"] = "0.3" }},
		{"missing source", events.TypePeerLeft, func(e, _ map[string]any) { delete(e, "source") }},
		{"missing subject", events.TypePeerLeft, func(e, _ map[string]any) { delete(e, "subject") }},
		{"missing time", events.TypePeerLeft, func(e, _ map[string]any) { delete(e, "time") }},
		{"time not date-time", events.TypePeerLeft, func(e, _ map[string]any) { e["time"] = "yesterday" }},
		{"time without zone", events.TypePeerLeft, func(e, _ map[string]any) { e["time"] = "2025-01-02T03:04:05" }},
		{"missing room", events.TypeRoomCreated, func(e, _ map[string]any) { delete(e, "room") }},
		{"room with dot", events.TypeRoomCreated, func(e, _ map[string]any) { e["room"] = "r.1" }},
		{"room with wildcard", events.TypeRoomCreated, func(e, _ map[string]any) { e["room"] = "r*" }},
		{"room too long", events.TypeRoomCreated, func(e, _ map[string]any) { e["room"] = strings.Repeat("r", 65) }},
		{"empty room", events.TypeRoomCreated, func(e, _ map[string]any) { e["room"] = "" }},
		{"subject with space", events.TypeRoomCreated, func(e, _ map[string]any) { e["subject"] = "r 1" }},
		{"empty actor", events.TypeRoomCreated, func(e, _ map[string]any) { e["actor"] = "" }},
		{"missing node", events.TypeRoomCreated, func(e, _ map[string]any) { delete(e, "node") }},
		{"empty causationid", events.TypeRoomCreated, func(e, _ map[string]any) { e["causationid"] = "" }},
		{"unknown envelope attribute", events.TypeRoomCreated, func(e, _ map[string]any) { e["causationId"] = "x" }},
		{"empty prevhash", events.TypePeerJoined, func(e, _ map[string]any) { e["prevhash"] = "" }},
		{"prevhash upper case", events.TypePeerJoined, func(e, _ map[string]any) { e["prevhash"] = strings.Repeat("A", 64) }},
		{"prevhash short", events.TypePeerJoined, func(e, _ map[string]any) { e["prevhash"] = strings.Repeat("a", 63) }},
		{"missing data", events.TypeRoomCreated, func(e, _ map[string]any) { delete(e, "data") }},
		{"null data", events.TypeRoomCreated, func(e, _ map[string]any) { e["data"] = nil }},
		{"data of another type", events.TypePeerLeft, func(e, _ map[string]any) { e["type"] = events.TypeTrackUnpublished }},
		{"data missing required field", events.TypePeerJoined, func(_, d map[string]any) { delete(d, "peer") }},
		{"data extra field", events.TypePeerJoined, func(_, d map[string]any) { d["admin"] = true }},
		{"empty identity", events.TypePeerJoined, func(_, d map[string]any) { d["identity"] = "" }},
		{"data field wrong type", events.TypeSubscriptionStarted, func(_, d map[string]any) { d["publisher"] = 7 }},
		{"data peer not an id", events.TypeSubscriptionEnded, func(_, d map[string]any) { d["peer"] = "p.1" }},
		{"wrong role", events.TypePeerJoined, func(_, d map[string]any) { d["role"] = "admin" }},
		{"wrong transport", events.TypePeerJoined, func(_, d map[string]any) { d["transport"] = "WHIP" }},
		{"wrong reason", events.TypePeerLeft, func(_, d map[string]any) { d["reason"] = "bored" }},
		{"v1 wrong reason", events.TypePeerLeftV1, func(_, d map[string]any) { d["reason"] = "bored" }},
		// v2 needs the cause: a v1 payload under the v2 type is refused (decoding upcasts it
		// only under its own v1 type).
		{"peer.left.v2 without cause", events.TypePeerLeft, func(_, d map[string]any) { delete(d, "cause") }},
		{"peer.left.v2 cause without by", events.TypePeerLeft, func(_, d map[string]any) { d["cause"] = map[string]any{"detail": "x"} }},
		{"peer.left.v2 wrong by", events.TypePeerLeft, func(_, d map[string]any) { d["cause"] = map[string]any{"by": "alien"} }},
		{"peer.left.v2 cause as string", events.TypePeerLeft, func(_, d map[string]any) { d["cause"] = "client" }},
		{"peer.left.v2 empty detail", events.TypePeerLeft, func(_, d map[string]any) { d["cause"] = map[string]any{"by": "client", "detail": ""} }},
		{"peer.left.v1 with cause", events.TypePeerLeftV1, func(_, d map[string]any) { d["cause"] = map[string]any{"by": "client"} }},
		{"wrong kind", events.TypeTrackPublished, func(_, d map[string]any) { d["kind"] = "data" }},
		{"codec not a MIME type", events.TypeTrackPublished, func(_, d map[string]any) { d["codec"] = "VP8" }},
		{"clock_rate negative", events.TypeTrackPublished, func(_, d map[string]any) { d["clock_rate"] = -1 }},
		{"clock_rate fraction", events.TypeTrackPublished, func(_, d map[string]any) { d["clock_rate"] = 1.5 }},
		{"clock_rate over uint32", events.TypeTrackPublished, func(_, d map[string]any) { d["clock_rate"] = 1 << 32 }},
		{"channels over uint16", events.TypeTrackPublished, func(_, d map[string]any) { d["channels"] = 1 << 16 }},
		// A nil Go slice encodes as null; a track always has at least layer "0".
		{"layers null", events.TypeTrackPublished, func(_, d map[string]any) { d["layers"] = nil }},
		{"layers empty", events.TypeTrackPublished, func(_, d map[string]any) { d["layers"] = []any{} }},
		{"layer not a token", events.TypeTrackPublished, func(_, d map[string]any) { d["layers"] = []any{"h.1"} }},
		{"layers repeated", events.TypeTrackPublished, func(_, d map[string]any) { d["layers"] = []any{"0", "0"} }},
		{"source empty", events.TypeTrackPublished, func(_, d map[string]any) { d["source"] = "" }},
		{"source too long", events.TypeTrackPublished, func(_, d map[string]any) { d["source"] = strings.Repeat("s", 65) }},
		{"muted not a boolean", events.TypeTrackPublished, func(_, d map[string]any) { d["muted"] = "yes" }},
		{"metadata too long", events.TypePeerJoined, func(_, d map[string]any) { d["metadata"] = strings.Repeat("m", 4097) }},
		{"peer.updated without metadata", events.TypePeerUpdated, func(_, d map[string]any) { delete(d, "metadata") }},
		{"track.updated without muted", events.TypeTrackUpdated, func(_, d map[string]any) { delete(d, "muted") }},
		{"track.updated extra field", events.TypeTrackUpdated, func(_, d map[string]any) { d["source"] = "camera" }},
		{"speaker.changed without speaking", events.TypeSpeakerChanged, func(_, d map[string]any) { delete(d, "speaking") }},
		{"speaker.changed level beyond silence", events.TypeSpeakerChanged, func(_, d map[string]any) { d["level"] = 128 }},
		{"dtmf.received with two digits", events.TypeDTMFReceived, func(_, d map[string]any) { d["digit"] = "12" }},
		{"dtmf.received with a letter past D", events.TypeDTMFReceived, func(_, d map[string]any) { d["digit"] = "E" }},
		{"dtmf.received without duration", events.TypeDTMFReceived, func(_, d map[string]any) { delete(d, "duration_ms") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := mutate(t, c.typ, c.f)
			err := v.ValidateEvent(raw)
			require.ErrorIs(t, err, ErrInvalid, "%s", raw)
			require.NotErrorIs(t, err, ErrNoSchema)
			var verr *jsonschema.ValidationError
			require.ErrorAs(t, err, &verr, "schema failures carry the library's detailed error")
		})
	}
}

func TestNotAnEvent(t *testing.T) {
	v := newValidator(t)
	cases := []struct {
		name string
		raw  string
		want error
	}{
		{"unknown type", `{"type":"room.deleted.v1","id":"x"}`, ErrNoSchema},
		{"unknown version", strings.Replace(string(encode(t, samples[events.TypePeerLeft], "")), events.TypePeerLeft, "peer.left.v9", 1), ErrNoSchema},
		{"envelope is not a type", `{"type":"envelope"}`, ErrNoSchema},
		{"empty input", ``, ErrInvalid},
		{"truncated", `{"type":"peer.left.v1",`, ErrInvalid},
		{"trailing garbage", `{"type":"peer.left.v1"} {}`, ErrInvalid},
		{"null", `null`, ErrInvalid},
		{"array", `[{"type":"peer.left.v1"}]`, ErrInvalid},
		{"string", `"peer.left.v1"`, ErrInvalid},
		{"no type", `{"id":"x"}`, ErrInvalid},
		{"type not a string", `{"type":7}`, ErrInvalid},
		{"invalid UTF-8", "{\"type\":\"\xff\"}", ErrNoSchema},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.ErrorIs(t, v.ValidateEvent([]byte(c.raw)), c.want)
		})
	}
}

// TestCompat replays the frozen events in testdata/compat. They were written once from valid
// events and must never be edited: if one fails, the schema change broke readers of old events,
// and the fix is a new version, not a new golden file.
func TestCompat(t *testing.T) {
	v := newValidator(t)
	paths, err := filepath.Glob(filepath.Join("testdata", "compat", "*.json"))
	require.NoError(t, err)
	var seen []string
	for _, p := range paths {
		typ := strings.TrimSuffix(filepath.Base(p), ".json")
		seen = append(seen, typ)
		t.Run(typ, func(t *testing.T) {
			raw, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, v.ValidateEvent(raw))

			e, err := events.Decode(raw)
			require.NoError(t, err)
			require.Equal(t, typ, e.Type, "compat file name must be its event type")
			_, err = e.Payload()
			require.NoError(t, err, "events must still decode (or upcast) every old version")
		})
	}
	require.ElementsMatch(t, v.Types(), seen, "freeze one example per schema in testdata/compat")
}

func TestConcurrentUse(t *testing.T) {
	v := newValidator(t)
	good := encode(t, samples[events.TypeTrackPublished], "")
	bad := mutate(t, events.TypeTrackPublished, func(_, d map[string]any) { d["kind"] = "data" })
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if err := v.ValidateEvent(good); err != nil {
					t.Error(err)
				}
				if err := v.ValidateEvent(bad); !errors.Is(err, ErrInvalid) {
					t.Errorf("want ErrInvalid, got %v", err)
				}
			}
		})
	}
	wg.Wait()
}

func TestCompileRejectsMismatchedID(t *testing.T) {
	env, err := files.ReadFile("events/envelope.json")
	require.NoError(t, err)
	ok, err := files.ReadFile("events/peer.left.v1.json")
	require.NoError(t, err)
	cases := []struct {
		name string
		fsys fstest.MapFS
	}{
		{"copied file keeps old $id", fstest.MapFS{
			"envelope.json":     {Data: env},
			"peer.left.v2.json": {Data: ok},
		}},
		{"not JSON", fstest.MapFS{
			"envelope.json":     {Data: env},
			"peer.left.v1.json": {Data: []byte("{")},
		}},
		{"dangling $ref", fstest.MapFS{
			"peer.left.v1.json": {Data: ok},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := compile(c.fsys)
			require.Error(t, err)
		})
	}
}

// FuzzValidateEvent checks that arbitrary bytes never panic and always get a classified error.
// Seeds: testdata/fuzz/FuzzValidateEvent plus every compat event.
func FuzzValidateEvent(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "compat", "*.json"))
	require.NoError(f, err)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(b)
	}
	v := newValidator(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		err := v.ValidateEvent(raw)
		if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNoSchema) {
			t.Fatalf("unclassified error: %v", err)
		}
	})
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sortedStrings(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] > s[i] {
			return false
		}
	}
	return true
}
