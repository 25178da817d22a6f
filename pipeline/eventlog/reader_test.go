package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// fill appends n events to each room, alternating rooms, and returns the ids per room in order.
func fill(t *testing.T, n node, rooms []string, count int) map[string][]string {
	t.Helper()
	a := eventlog.NewAppender(n.js, "n1")
	out := map[string][]string{}
	for i := range count {
		for _, r := range rooms {
			e := joined(t, r, fmt.Sprint("p", i))
			_, err := a.Append(t.Context(), e)
			require.NoError(t, err)
			if i == 0 {
				out[r] = append(out[r], "room-created-"+r)
			}
			out[r] = append(out[r], e.ID)
		}
	}
	return out
}

func TestRead(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	want := fill(t, n, []string{"r", "s"}, 5)

	collect := func(opts eventlog.ReadOptions) []events.Envelope {
		var got []events.Envelope
		require.NoError(t, eventlog.Read(ctx, n.js, opts, func(e events.Envelope) error {
			got = append(got, e)
			return nil
		}))
		return got
	}

	got := collect(eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r")})
	require.Equal(t, want["r"], ids(got))
	for i, e := range got {
		require.NotZero(t, e.Seq)
		if i > 0 {
			require.Greater(t, e.Seq, got[i-1].Seq, "log order")
		}
		require.Equal(t, "r", e.Room)
	}

	all := collect(eventlog.ReadOptions{Filter: eventlog.EventsSubjects})
	require.Len(t, all, len(want["r"])+len(want["s"]))
	for i, e := range all {
		require.Equal(t, uint64(i+1), e.Seq, "every stored event, by stream sequence")
	}

	from := got[3].Seq
	require.Equal(t, want["r"][3:], ids(collect(eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r"), FromSeq: from})))
	require.Empty(t, collect(eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r"), FromSeq: all[len(all)-1].Seq + 1}))
	require.Empty(t, collect(eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("empty")}))

	stop := errors.New("stop")
	calls := 0
	err := eventlog.Read(ctx, n.js, eventlog.ReadOptions{Filter: eventlog.EventsSubjects}, func(events.Envelope) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	require.Equal(t, 3, calls)
}

// Read stops at the head it saw when it started, even while events keep coming.
func TestReadStopsAtHead(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	want := fill(t, n, []string{"r"}, 3)
	a := eventlog.NewAppender(n.js, "n2")
	var got []string
	err := eventlog.Read(ctx, n.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r")}, func(e events.Envelope) error {
		got = append(got, e.ID)
		_, err := a.Append(ctx, joined(t, "r", "later"))
		return err
	})
	require.NoError(t, err)
	require.Equal(t, want["r"], got)
}

func TestReadUndecodable(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	fill(t, n, []string{"r"}, 1)
	_, err := n.js.Publish(ctx, "ev.r.junk", []byte("not an event"))
	require.NoError(t, err)
	err = eventlog.Read(ctx, n.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r")}, func(events.Envelope) error { return nil })
	require.ErrorIs(t, err, events.ErrInvalid)
}

func TestFollow(t *testing.T) {
	n := start(t)
	want := fill(t, n, []string{"r"}, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	all := make(chan events.Envelope, 100)
	fresh := make(chan events.Envelope, 100)
	done := make(chan error, 2)
	go func() {
		done <- eventlog.Follow(ctx, n.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r"), FromSeq: 1}, func(e events.Envelope) error {
			all <- e
			return nil
		})
	}()
	go func() {
		done <- eventlog.Follow(ctx, n.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r")}, func(e events.Envelope) error {
			fresh <- e
			return nil
		})
	}()

	next := func(ch chan events.Envelope) events.Envelope {
		select {
		case e := <-ch:
			return e
		case <-ctx.Done():
			t.Fatal("timed out following")
			return events.Envelope{}
		}
	}
	for _, id := range want["r"] {
		require.Equal(t, id, next(all).ID, "stored events first, in order")
	}

	// The new-only follower delivers only what is appended after it started. It may not be
	// subscribed yet: append until it sees something, then check it saw nothing older.
	a := eventlog.NewAppender(n.js, "n1")
	var appended []string
	var first events.Envelope
	for first.ID == "" {
		e := joined(t, "r", "new")
		_, err := a.Append(ctx, e)
		require.NoError(t, err)
		appended = append(appended, e.ID)
		select {
		case first = <-fresh:
		case <-time.After(50 * time.Millisecond):
		}
	}
	require.Contains(t, appended, first.ID)
	require.NotContains(t, want["r"], first.ID)

	var last uint64
	for _, id := range appended {
		e := next(all)
		require.Equal(t, id, e.ID, "new events follow the stored ones, in order")
		require.Greater(t, e.Seq, last)
		last = e.Seq
	}

	cancel()
	require.NoError(t, <-done, "cancelling the context ends Follow cleanly")
	require.NoError(t, <-done)
}

func TestFollowHandlerError(t *testing.T) {
	n := start(t)
	fill(t, n, []string{"r"}, 1)
	stop := errors.New("stop")
	err := eventlog.Follow(t.Context(), n.js, eventlog.ReadOptions{Filter: eventlog.RoomEventsFilter("r"), FromSeq: 1}, func(events.Envelope) error {
		return stop
	})
	require.ErrorIs(t, err, stop)
}
