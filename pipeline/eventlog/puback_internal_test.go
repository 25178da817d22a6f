package eventlog

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

func TestParsePubAck(t *testing.T) {
	// The fast path must take the answers the server sends (a test node has a domain).
	for _, in := range []string{`{"stream":"EVENTS","seq":42}`, `{"stream":"EVENTS","domain":"jetmedia","seq":42}`} {
		seq, ok := fastPubAck([]byte(in))
		require.True(t, ok, in)
		require.Equal(t, uint64(42), seq)
	}
	for _, c := range []struct {
		in      string
		want    pubAck
		errCode jetstream.ErrorCode // 0: no API error
		invalid bool
	}{
		{in: `{"stream":"EVENTS","seq":42}`, want: pubAck{seq: 42}},
		{in: `{"stream":"EVENTS","seq":18446744073709551615}`, want: pubAck{seq: 18446744073709551615}},
		{in: `{"stream":"EVENTS","seq":42,"duplicate": true}`, want: pubAck{seq: 42, duplicate: true}},
		{in: `{"stream":"EVENTS","domain":"jetmedia","seq":7}`, want: pubAck{seq: 7}},
		{in: `{"stream":"EVENTS","domain":"a\"b","seq":7}`, want: pubAck{seq: 7}},
		{in: "{\"stream\":\"EVENTS\",\"domain\":\"a\x01\",\"seq\":7}", invalid: true},
		{in: `{"stream":"EVENTS", "seq": 9}`, want: pubAck{seq: 9}},
		{in: `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"EVENTS","seq":0}`,
			errCode: jetstream.JSErrCodeStreamWrongLastSequence},
		{in: `{"stream":"EVENTS","seq":042}`, invalid: true},
		{in: `{"stream":"EVENTS","seq":}`, invalid: true},
		{in: `{"seq":5}`, invalid: true},
		{in: ``, invalid: true},
		{in: `{"stream":"EVENTS","seq":99999999999999999999}`, invalid: true},
	} {
		got, err := parsePubAck([]byte(c.in))
		switch {
		case c.invalid:
			require.ErrorIs(t, err, jetstream.ErrInvalidJSAck, c.in)
		case c.errCode != 0:
			_, ok := wrongLastSequence(err)
			require.True(t, ok, "%s: %v", c.in, err)
		default:
			require.NoError(t, err, c.in)
			require.Equal(t, c.want, got, c.in)
		}
	}
}

// FuzzParsePubAck checks that any answer is read without a panic, and that the fast path
// never disagrees with encoding/json on what it accepts.
func FuzzParsePubAck(f *testing.F) {
	f.Add([]byte(`{"stream":"EVENTS","seq":1}`))
	f.Add([]byte(`{"stream":"EVENTS","domain":"jetmedia","seq":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parsePubAck(b)
		if err != nil {
			var apiErr *jetstream.APIError
			if !errors.Is(err, jetstream.ErrInvalidJSAck) && !errors.As(err, &apiErr) {
				t.Fatalf("%q: unexpected error type %v", b, err)
			}
			return
		}
		var r struct {
			Stream    string `json:"stream"`
			Seq       uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%q accepted as %+v, but it is not JSON: %v", b, got, err)
		}
		if r.Seq != got.seq || r.Duplicate != got.duplicate || r.Stream == "" {
			t.Fatalf("%q read as %+v, encoding/json reads %+v", b, got, r)
		}
	})
}
