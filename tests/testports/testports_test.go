package testports_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/jetmedia/jetmedia/tests/testports"
)

// Reserved ports are distinct, below the ephemeral range, and bindable.
func TestReserve(t *testing.T) {
	ports := testports.Reserve(t, 20)
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < 20000 || p >= 32000 {
			t.Fatalf("port %d outside 20000-32000", p)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("binding reserved port %d: %v", p, err)
		}
		_ = l.Close()
	}
}

// A port locked by one reservation is not handed out again while it is held.
func TestReserveNoReuseWhileHeld(t *testing.T) {
	held := map[int]bool{}
	for range 5 {
		for _, p := range testports.Reserve(t, 50) {
			if held[p] {
				t.Fatalf("port %d handed out while still held", p)
			}
			held[p] = true
		}
	}
}
