package netimpair

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestShaperRateCapSpacesDatagrams(t *testing.T) {
	s := newShaper(1)
	// 80 kbit/s: a 1000-byte datagram takes 100 ms; the bucket lets the first one through.
	s.set(Link{Rate: 80_000, Burst: 1000, Queue: 250 * time.Millisecond})
	t0 := time.Unix(0, 0)
	var outs []time.Time
	verdicts := map[Verdict]int{}
	for range 6 {
		v, at := s.admit(1000, t0)
		verdicts[v]++
		if v == Pass {
			outs = append(outs, at)
		}
	}
	// Sent back to back: the first leaves at once (bucket), the next ones 100 ms apart until
	// the queue holds 250 ms, the rest are tail-dropped.
	require.Equal(t, 4, verdicts[Pass])
	require.Equal(t, 2, verdicts[Overflow])
	require.Equal(t, t0, outs[0])
	for i := 1; i < len(outs); i++ {
		require.Equal(t, 100*time.Millisecond, outs[i].Sub(outs[i-1]))
	}
	// After the queue drained, the link passes again.
	v, at := s.admit(1000, t0.Add(time.Second))
	require.Equal(t, Pass, v)
	require.Equal(t, t0.Add(time.Second), at)
}

func TestShaperLossDelayJitterKeepOrder(t *testing.T) {
	s := newShaper(7)
	s.set(Link{Loss: 0.05, Delay: 20 * time.Millisecond, Jitter: 30 * time.Millisecond})
	t0 := time.Unix(0, 0)
	lost, last := 0, time.Time{}
	const n = 20000
	for i := range n {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		v, at := s.admit(1200, now)
		if v == Lost {
			lost++
			continue
		}
		require.Equal(t, Pass, v)
		require.False(t, at.Before(now.Add(20*time.Millisecond)), "delay applied")
		require.False(t, at.Before(last), "order kept")
		last = at
	}
	require.InDelta(t, 0.05, float64(lost)/n, 0.01)
}

// TestRelayCarriesBothWays runs a real UDP echo target behind the relay.
func TestRelayCarriesBothWays(t *testing.T) {
	echo, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 2000)
		for {
			n, from, err := echo.ReadFromUDP(b)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDP(b[:n], from)
		}
	}()
	defer func() { _ = echo.Close(); <-done }()

	r, err := New(echo.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	defer func() { require.NoError(t, r.Close()) }()
	r.SetDown(Link{Delay: 30 * time.Millisecond})

	c, err := net.DialUDP("udp4", nil, r.Addr())
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	b := make([]byte, 100)
	n, err := c.Read(b)
	require.NoError(t, err)
	require.Equal(t, "ping", string(b[:n]))
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	require.Equal(t, uint64(1), r.Up().Passed)

	// A link that loses everything delivers nothing.
	r.SetUp(Link{Loss: 1})
	_, err = c.Write([]byte("lost"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.Up().Lost == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, uint64(1), r.Up().Passed)
}

func TestAnswersPointAtTheRelay(t *testing.T) {
	target := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/sdp")
		_, _ = io.WriteString(w, "a=candidate:1 1 udp 2130706431 127.0.0.1 8443 typ host\r\n")
	}))
	defer srv.Close()
	r, err := New(target)
	require.NoError(t, err)
	defer r.Close()
	hc := &http.Client{Transport: r.Answers(target, nil)}
	resp, err := hc.Get(srv.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Contains(t, string(body), r.Addr().String()[len("127.0.0.1:"):]+" typ host")
	require.NotContains(t, string(body), " 8443 typ")
	hc.CloseIdleConnections()
}
