// Package testports hands tests loopback ports that nothing else will take before the test
// binds them.
//
// Asking the kernel for a free port (listen on :0, close, pass the number on) races: between the
// close and the server's own bind, another test package running in parallel may be given the same
// port for its own :0 listener or as the local end of an outgoing connection. CI lost a run to
// exactly that (a cluster route port taken, "bind: address already in use"). Ports from here come
// from below the kernel's ephemeral range, so no :0 bind or outgoing connection is handed them,
// and each is held by an exclusive lock file for the test's lifetime, so two test processes never
// get the same one.
package testports

import (
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The range ports are drawn from: above the registered services most machines run and below
// Linux's default ephemeral range (32768-60999), which the kernel uses for :0 and outgoing
// connections.
const (
	lowPort  = 20000
	highPort = 32000
)

// Reserve returns n loopback ports, each free for TCP and UDP when checked and locked for this
// test, so no other test process using this package gets it until the test ends.
func Reserve(t testing.TB, n int) []int {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "jetmedia-test-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testports: creating lock dir: %v", err)
	}
	low, high := portRange()
	out := make([]int, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries > 2000 {
			t.Fatalf("testports: no free port in %d-%d after %d tries", low, high, tries)
		}
		port := low + rand.IntN(high-low)
		lock, ok := lockPort(dir, port)
		if !ok {
			continue
		}
		if !free(port) {
			_ = lock.Close()
			continue
		}
		t.Cleanup(func() { _ = lock.Close() })
		out = append(out, port)
	}
	return out
}

// One is Reserve for a single port.
func One(t testing.TB) int {
	t.Helper()
	return Reserve(t, 1)[0]
}

// Addr is a reserved port as a loopback host:port.
func Addr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(One(t))
}

// portRange keeps below the machine's ephemeral range if it was lowered under highPort.
func portRange() (int, int) {
	low, high := lowPort, highPort
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return low, high
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return low, high
	}
	start, err := strconv.Atoi(fields[0])
	if err == nil && start > low+1000 && start < high {
		high = start
	}
	return low, high
}

// lockPort takes an exclusive, non-blocking lock on the port's file; the lock goes with the
// process, so a crashed test leaves no stale reservation.
func lockPort(dir string, port int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, false
	}
	return f, true
}

// free reports whether the port can be bound for TCP and UDP on loopback right now.
func free(port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer func() { _ = l.Close() }()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	_ = u.Close()
	return true
}
