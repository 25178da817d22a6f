package events_test

import (
	"errors"
	"testing"

	"github.com/jetmedia/jetmedia/events"
)

// FuzzDecode checks that no input makes Decode or Payload panic, that every rejection is one of
// the package's sentinels, and that whatever decodes re-encodes to something that decodes to
// the same envelope.
func FuzzDecode(f *testing.F) {
	for _, p := range samples {
		e, err := events.New(events.Meta{Room: "r1", Node: "n"}, p)
		if err != nil {
			f.Fatal(err)
		}
		b, err := events.Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := events.Decode(b)
		if err != nil {
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Decode error is not ErrInvalid: %v", err)
			}
			return
		}
		if _, err := e.Payload(); err != nil && !errors.Is(err, events.ErrInvalid) && !errors.Is(err, events.ErrUnknownType) {
			t.Fatalf("Payload error is neither ErrInvalid nor ErrUnknownType: %v", err)
		}
		again, err := events.Encode(e)
		if err != nil {
			t.Fatalf("decoded envelope does not encode: %v", err)
		}
		e2, err := events.Decode(again)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v\n%s", err, again)
		}
		if e2.ID != e.ID || e2.Type != e.Type || e2.Room != e.Room || !e2.Time.Equal(e.Time) {
			t.Fatalf("round trip changed the envelope: %+v vs %+v", e, e2)
		}
	})
}
