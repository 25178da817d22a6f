package projections_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// TestRunRoomRecords: the watch tells each write of a room's record with the bucket's
// sequence of that write, from the moment it runs, and nothing about other keys.
func TestRunRoomRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := start(t)
	js, kv := e.js, e.kv
	_, err := kv.Put(ctx, projections.RoomKey("before"), []byte("{}"))
	require.NoError(t, err)

	type write struct {
		room string
		seq  uint64
	}
	var mu sync.Mutex
	var told []write
	wctx, stop := context.WithCancel(ctx)
	up, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- projections.RunRoomRecords(wctx, js, eventlog.BucketRooms, func(room string, seq uint64) {
			mu.Lock()
			told = append(told, write{room, seq})
			mu.Unlock()
		}, nil, func() { close(up) })
	}()
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("the watch did not start: %v", err)
	}
	_, err = kv.Put(ctx, "r1.peer.p", []byte("{}"))
	require.NoError(t, err)
	s1, err := kv.Put(ctx, projections.RoomKey("r1"), []byte("{}"))
	require.NoError(t, err)
	_, err = kv.Put(ctx, "r2.track.t", []byte("{}"))
	require.NoError(t, err)
	s2, err := kv.Put(ctx, projections.RoomKey("r2"), []byte("{}"))
	require.NoError(t, err)
	want := []write{{"r1", s1}, {"r2", s2}}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(told) >= len(want)
	}, 10*time.Second, 10*time.Millisecond)
	stop()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, want, told)
}
