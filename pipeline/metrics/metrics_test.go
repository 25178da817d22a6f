package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
)

func TestCountRooms(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys []string
		want roomCounts
	}{
		{"empty", nil, roomCounts{}},
		{"room with no peer left is not live", []string{"a.room"}, roomCounts{}},
		{"one publisher and a viewer", []string{
			"a.room", "a.peer.p1", "a.peer.v1", "a.track.t1", "a.track.t2", "a.sub.v1.t1", "a.sub.v1.t2",
		}, roomCounts{Rooms: 1, Peers: 2, Tracks: 2, Subscriptions: 2}},
		{"two rooms, one empty", []string{"a.room", "a.peer.p1", "b.room", "b.track.t9"},
			roomCounts{Rooms: 1, Peers: 1, Tracks: 1}},
		{"unknown kinds and keys without a room are ignored", []string{"x", "a.other.y", "a.peer.p"},
			roomCounts{Rooms: 1, Peers: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := map[string][]byte{}
			for _, k := range tc.keys {
				snap[k] = nil
			}
			require.Equal(t, tc.want, countRooms(snap))
		})
	}
}

type fakeAppender struct{ err error }

func (f fakeAppender) Append(context.Context, ...events.Envelope) (uint64, error) {
	time.Sleep(time.Millisecond)
	return 7, f.err
}

func TestTimedAppender(t *testing.T) {
	m := New(Sources{})
	seq, err := m.Appender(fakeAppender{}).Append(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(7), seq)
	_, err = m.Appender(fakeAppender{err: errors.New("boom")}).Append(context.Background())
	require.Error(t, err)
	require.Equal(t, 1.0, testutil.ToFloat64(m.appendErrors))
	mfs, err := m.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "jetmedia_event_append_duration_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			require.Equal(t, uint64(2), h.GetSampleCount())
			require.Greater(t, h.GetSampleSum(), 0.002*0.9)
		}
	}
}
