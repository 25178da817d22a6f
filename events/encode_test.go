package events_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
)

// The chain hashes the stored bytes, so Encode must write exactly what encoding/json writes
// for an envelope: every case here is compared with json.Marshal, for the fast path and for
// each reason to leave it.
func TestEncodeIsJSONMarshal(t *testing.T) {
	base, err := events.New(events.Meta{Room: "r1", Actor: "p1", Node: "n1", Time: time.Date(2026, 12, 7, 13, 0, 0, 123456000, time.UTC)},
		events.PeerJoined{Peer: "p1", Transport: "whip", Role: "publisher", Node: "n1"})
	require.NoError(t, err)
	east := time.FixedZone("east", 5*3600+30*60)
	cases := map[string]func(e *events.Envelope){
		"plain":                func(*events.Envelope) {},
		"causation and prev":   func(e *events.Envelope) { e.CausationID, e.PrevHash = "c1", events.Hash([]byte("x")) },
		"whole second":         func(e *events.Envelope) { e.Time = e.Time.Truncate(time.Second) },
		"nanoseconds":          func(e *events.Envelope) { e.Time = e.Time.Add(789) },
		"zone":                 func(e *events.Envelope) { e.Time = e.Time.In(east) },
		"zone west":            func(e *events.Envelope) { e.Time = e.Time.In(time.FixedZone("w", -11*3600)) },
		"zone 23h":             func(e *events.Envelope) { e.Time = e.Time.In(time.FixedZone("z", 23*3600+59*60)) },
		"zone 24h (error)":     func(e *events.Envelope) { e.Time = e.Time.In(time.FixedZone("z", 24*3600)) },
		"zone 100h (error)":    func(e *events.Envelope) { e.Time = e.Time.In(time.FixedZone("z", -100*3600)) },
		"zero time":            func(e *events.Envelope) { e.Time = time.Time{} },
		"year 9999":            func(e *events.Envelope) { e.Time = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) },
		"year 10000 (error)":   func(e *events.Envelope) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"year -1 (error)":      func(e *events.Envelope) { e.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
		"html in actor":        func(e *events.Envelope) { e.Actor = "<a&b>" },
		"quote and backslash":  func(e *events.Envelope) { e.Node = `n"\1` },
		"control":              func(e *events.Envelope) { e.Source = "a\x00b\nc\td\x7f" },
		"unicode":              func(e *events.Envelope) { e.Actor = "Zoë \u2028 日本" },
		"invalid utf-8":        func(e *events.Envelope) { e.Actor = "a\xffb" },
		"nil data":             func(e *events.Envelope) { e.Data = nil },
		"empty data (error)":   func(e *events.Envelope) { e.Data = json.RawMessage{} },
		"spaced data":          func(e *events.Envelope) { e.Data = json.RawMessage(` { "a" : [1, 2] } `) },
		"html in data":         func(e *events.Envelope) { e.Data = json.RawMessage(`{"a":"<b>"}`) },
		"u2028 in data":        func(e *events.Envelope) { e.Data = json.RawMessage("{\"a\":\"x\u2029y\"}") },
		"invalid data (error)": func(e *events.Envelope) { e.Data = json.RawMessage(`{"a":}`) },
		"trailing (error)":     func(e *events.Envelope) { e.Data = json.RawMessage(`{} {}`) },
		"escapes in data":      func(e *events.Envelope) { e.Data = json.RawMessage(`{"a":"\"\\\/\b\f\n\r\t\u00e9"}`) },
		"numbers":              func(e *events.Envelope) { e.Data = json.RawMessage(`[0,-1,1.5,-0.25e+10,3E-2,12e7]`) },
		"bad number (error)":   func(e *events.Envelope) { e.Data = json.RawMessage(`[01]`) },
		"literals":             func(e *events.Envelope) { e.Data = json.RawMessage(`[true,false,null,{},[]]`) },
		"deep data": func(e *events.Envelope) {
			e.Data = json.RawMessage(bytes.Repeat([]byte("["), 100))
			e.Data = append(e.Data, bytes.Repeat([]byte("]"), 100)...)
		},
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			e := base
			change(&e)
			requireSameAsMarshal(t, e)
		})
	}
}

func requireSameAsMarshal(t *testing.T, e events.Envelope) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	got, err := events.Encode(e)
	if wantErr != nil {
		require.Error(t, err, "json.Marshal refuses it: %v", wantErr)
		return
	}
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))
	prefix := []byte("prefix")
	appended, err := events.AppendEncode(prefix, e)
	require.NoError(t, err)
	require.Equal(t, "prefix"+string(want), string(appended))
}

// FuzzEncode checks Encode against json.Marshal for arbitrary envelopes.
func FuzzEncode(f *testing.F) {
	f.Add("p1", "peer.joined.v1", "jetmedia/n1", "r1", "", "", int64(1_765_000_000), int64(123_456_000), 0, []byte(`{"peer":"p1"}`))
	f.Add("a<b", "t", "s\u2028", "r", "c", "h", int64(-62_135_596_801), int64(0), 3600, []byte(` [1, "x"] `))
	f.Add("x", "y", "z", "w", "", "0f", int64(253_402_300_800), int64(999_999_999), -90000, []byte(`{"a":"\u00e9<"}`))
	f.Fuzz(func(t *testing.T, id, typ, source, room, causation, prev string, sec, nsec int64, offset int, data []byte) {
		e := events.Envelope{SpecVersion: events.SpecVersion, ID: id, Type: typ, Source: source, Subject: room,
			Time: time.Unix(sec, nsec).In(time.FixedZone("z", offset%(200*3600))), Room: room, Actor: id, Node: source,
			CausationID: causation, PrevHash: prev, Data: data}
		requireSameAsMarshal(t, e)
	})
}

func BenchmarkEncode(b *testing.B) {
	e, err := events.New(events.Meta{Room: "room12", Actor: "peer7", Node: "n1", Time: time.Now()},
		events.PeerJoined{Peer: "peer7", Transport: "whip", Role: "publisher", Node: "n1"})
	require.NoError(b, err)
	e.PrevHash = events.Hash([]byte("previous"))
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := events.Encode(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendEncode", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			if buf, err = events.AppendEncode(buf[:0], e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	raw, err := events.Encode(e)
	require.NoError(b, err)
	b.Run("Hash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			events.Hash(raw)
		}
	})
}
