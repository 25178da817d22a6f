package tests

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/tests/browser"
	"github.com/jetmedia/jetmedia/tests/netimpair"
)

// TestBrowserSimulcastFollowsCap: a Chromium simulcast publisher (q, h, f) and three
// Chromium WHEP viewers, each behind its own tests/netimpair relay (an HTTP proxy per viewer
// rewrites the node's candidate in the answer to its relay's). Every viewer starts on the top
// layer; two have their downlink capped at 300 kbit/s, the third stays free as a control.
// The node's congestion control moves each capped viewer to a lower layer and it keeps
// decoding while the control stays on top (counted, not asserted: a loaded machine lowers it
// too); the caps lifted, the two climb back to the top layer. Times, rates through the
// relays and Chromium's freeze counts are logged (docs/benchmarks.md), not asserted; the
// bounds are liveness.
func TestBrowserSimulcastFollowsCap(t *testing.T) {
	chromium := browser.RequireChromium(t)
	node := startDevNode(t, "browser-simulcast-bwe", func(c *app.Config) { c.UDPHost = "127.0.0.1" })
	const viewers, capped = 3, 2 // viewers 0..capped-1 get the cap
	relays := make([]*netimpair.Relay, viewers)
	proxies := make([]string, viewers)
	for i := range viewers {
		relays[i], proxies[i] = relayed(t, node)
	}

	b := browser.Start(t, chromium)
	room := "simulcast-bwe-" + strings.ToLower(rand.Text()[:10])
	publisher := b.Open(t, node.HTTPURL()+"/?"+url.Values{"room": {room}, "auto": {"publish"}, "simulcast": {"1"},
		"codec": {"VP8"}, "video": {"1280x720"}}.Encode())
	tabs := make([]*browser.Tab, viewers)
	diagnose := func() string {
		var sb strings.Builder
		if cc := node.Congestion(); cc != nil {
			fmt.Fprintf(&sb, "\ncongestion: layer downs %d ups %d, pauses %d resumes %d; estimates %+v",
				cc.LayerDowns.Load(), cc.LayerUps.Load(), cc.Pauses.Load(), cc.Resumes.Load(), node.Estimates().All())
		}
		named := map[string]*browser.Tab{"publisher": publisher}
		for i, tab := range tabs {
			named[fmt.Sprintf("viewer %d (relay down %+v)", i, relays[i].Down())] = tab
		}
		for name, tab := range named {
			if tab == nil {
				continue
			}
			st, err := tab.Stats()
			fmt.Fprintf(&sb, "\n--- %s\nstatus: %s\nstats: %+v (err %v)\nconsole:\n%s\n", name, tab.Text("status"), st, err, tabConsole(tab))
		}
		return sb.String()
	}
	waitStats(t, publisher, "the publisher sends three layers", 30*time.Second, func(s browser.PageStats) bool {
		return s.State == "publishing" && s.LayersSent == 3
	}, diagnose)
	for i := range viewers {
		tabs[i] = b.Open(t, proxies[i]+"/?"+url.Values{"room": {room}, "auto": {"play"}}.Encode())
	}
	const top = 1280 // the capture's width: the f layer
	for i, tab := range tabs {
		waitStats(t, tab, fmt.Sprintf("viewer %d decodes the top layer", i), 45*time.Second, func(s browser.PageStats) bool {
			return s.FramesDecoded > 30 && s.FrameWidth == top
		}, diagnose)
		require.Positive(t, relays[i].Down().PassedBytes, "viewer %d's media goes through its relay", i)
	}
	cc := node.Congestion()
	require.NotNil(t, cc, "BWE is on by default")
	w := &capWatch{t: t, tabs: tabs, relays: relays, node: node, diagnose: diagnose}
	w.sample() // the baseline of every rate and counter
	time.Sleep(3 * time.Second)
	w.sample()
	for i := range viewers {
		t.Logf("uncapped: viewer %d %s", i, w.since(i, 0))
	}

	const capRate = 300_000
	for i := range capped {
		relays[i].SetDown(netimpair.Link{Rate: capRate})
	}
	capStart := w.mark()
	w.until("the capped viewers get a lower layer", 30*time.Second, func(i int, s browser.PageStats) bool {
		return i >= capped || (s.FrameWidth > 0 && s.FrameWidth < top)
	})
	// Capped for 12 s from the cap, sampled each second (width, frames, freezes).
	for time.Since(w.at[capStart]) < 12*time.Second {
		time.Sleep(time.Second)
		w.sample()
	}
	capEnd := w.mark()
	for i := range viewers {
		lowered := "uncapped"
		if i < capped {
			lowered = "lower layer after " + w.firstAfter(i, capStart)
		}
		t.Logf("capped at %d bit/s: viewer %d %s; over the capped %s: %s", capRate, i, lowered,
			w.at[capEnd].Sub(w.at[capStart]).Round(100*time.Millisecond), w.since(i, capStart))
		t.Logf("  viewer %d per sample: %s", i, w.timeline(i, capStart))
	}
	t.Logf("estimates (kbit/s, ascending) under the cap: %s; layer downs %d ups %d, pauses %d", w.estimates(capStart),
		cc.LayerDowns.Load(), cc.LayerUps.Load(), cc.Pauses.Load())
	require.Positive(t, cc.LayerDowns.Load(), "congestion control lowered the layer")
	for i := range viewers {
		last := w.last(i)
		require.Greater(t, last.FramesDecoded, w.stats[capStart][i].FramesDecoded, "viewer %d decodes under the cap", i)
		if i >= capped {
			// Logged, not asserted: on a machine loaded past its cores Chromium reads late,
			// GCC sees that as congestion and lowers even the control (the run ends with every
			// viewer back on the top layer, which is asserted below).
			below := 0
			for k := capStart + 1; k <= capEnd; k++ {
				if w.stats[k][i].FrameWidth != top {
					below++
				}
			}
			t.Logf("the uncapped viewer %d was below the top layer in %d of %d samples under the cap", i, below, capEnd-capStart)
		}
	}

	for i := range capped {
		relays[i].SetDown(netimpair.Link{})
	}
	freed := w.mark()
	w.until("the freed viewers climb back to the top layer", 90*time.Second, func(i int, s browser.PageStats) bool {
		return s.FrameWidth == top
	})
	upEnd := w.mark()
	for i := range capped {
		t.Logf("cap lifted: viewer %d back on the top layer after %s; per sample: %s", i, w.firstAfter(i, freed),
			w.timeline(i, freed))
	}
	t.Logf("estimates (kbit/s, ascending) after the cap: %s", w.estimates(freed))
	// Every viewer goes on decoding after the climb: 10 more frames, waited for (a liveness
	// bound, not a timing). On a machine loaded past its cores (CI under -race beside the
	// cluster suites) Chromium once decoded 8 frames in the 5 s after climbing back; how long
	// each took is logged with its frame rate per sample.
	w.until("every viewer keeps decoding after the climb", 30*time.Second, func(i int, s browser.PageStats) bool {
		return s.FramesDecoded > w.stats[upEnd][i].FramesDecoded+10
	})
	time.Sleep(2 * time.Second)
	end := w.mark()
	for i := range viewers {
		t.Logf("after the climb: viewer %d decoded 10 more frames after %s; per sample: %s", i,
			w.firstAfter(i, upEnd), w.timeline(i, upEnd))
		t.Logf("whole run: viewer %d %s", i, w.since(i, capStart))
	}
	t.Logf("estimates (kbit/s, ascending) after the climb: %s", w.estimates(upEnd))
	load, _ := os.ReadFile("/proc/loadavg") // the figures depend on it: Chromium decodes late on a busy machine
	t.Logf("estimates at the end: %v; layer downs %d ups %d, pauses %d resumes %d (%d samples); load average %s",
		bitrates(node.Estimates().All()), cc.LayerDowns.Load(), cc.LayerUps.Load(), cc.Pauses.Load(), cc.Resumes.Load(),
		end+1, strings.TrimSpace(string(load)))
}

// capWatch samples every viewer's page stats and relay counters; each sample has an index
// (mark returns the newest) so that phases can be compared.
type capWatch struct {
	t        *testing.T
	tabs     []*browser.Tab
	relays   []*netimpair.Relay
	node     *app.Node
	diagnose func() string

	at    []time.Time
	ests  [][]int // every viewer connection's estimate, ascending (All has no viewer names)
	stats [][]browser.PageStats
	down  [][]netimpair.Counters
	// reached[k][i]: the sample at which viewer i first met the condition of until call k.
	reached map[int][]int
}

// sample reads every viewer's stats (a failed read repeats the previous one).
func (w *capWatch) sample() int {
	w.t.Helper()
	row := make([]browser.PageStats, len(w.tabs))
	down := make([]netimpair.Counters, len(w.tabs))
	for i, tab := range w.tabs {
		st, err := tab.Stats()
		if err != nil && len(w.stats) > 0 {
			st = w.stats[len(w.stats)-1][i]
		}
		row[i], down[i] = st, w.relays[i].Down()
	}
	ests := bitrates(w.node.Estimates().All())
	slices.Sort(ests)
	w.at, w.stats, w.down = append(w.at, time.Now()), append(w.stats, row), append(w.down, down)
	w.ests = append(w.ests, ests)
	return len(w.at) - 1
}

// mark takes a sample and returns its index.
func (w *capWatch) mark() int { return w.sample() }

func (w *capWatch) last(i int) browser.PageStats { return w.stats[len(w.stats)-1][i] }

// until samples every 250 ms until ok holds for every viewer (each viewer's first sample
// meeting it is kept for firstAfter), failing past timeout.
func (w *capWatch) until(what string, timeout time.Duration, ok func(int, browser.PageStats) bool) {
	w.t.Helper()
	if w.reached == nil {
		w.reached = map[int][]int{}
	}
	from := len(w.at) - 1
	first := make([]int, len(w.tabs))
	for i := range first {
		first[i] = -1
	}
	w.reached[from] = first
	deadline := time.Now().Add(timeout)
	for {
		k := w.sample()
		done := true
		for i := range w.tabs {
			if first[i] < 0 && ok(i, w.stats[k][i]) {
				first[i] = k
			}
			done = done && first[i] >= 0
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not within %s (reached at samples %v, last %+v)%s", what, timeout, first, w.stats[k], w.diagnose())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// firstAfter is how long after sample from viewer i met the condition of the until call
// that started there.
func (w *capWatch) firstAfter(i, from int) string {
	k := w.reached[from][i]
	if k < 0 {
		return "never"
	}
	return w.at[k].Sub(w.at[from]).Round(100 * time.Millisecond).String()
}

// since sums up viewer i from sample from to the newest: bit rate through its relay, frames
// per second, freezes and their duration, NACKs, retransmissions and PLIs.
func (w *capWatch) since(i, from int) string {
	k := len(w.at) - 1
	a, b := w.stats[from][i], w.stats[k][i]
	dt := w.at[k].Sub(w.at[from]).Seconds()
	bits := float64(w.down[k][i].PassedBytes-w.down[from][i].PassedBytes) * 8 / dt
	return fmt.Sprintf("width %d, %.0f bit/s through the relay (dropped %d), %.1f fps, %d freezes %.2f s, %d NACKs, %d retransmitted, %d PLIs",
		b.FrameWidth, bits, w.down[k][i].Overflow-w.down[from][i].Overflow, float64(b.FramesDecoded-a.FramesDecoded)/dt,
		b.FreezeCount-a.FreezeCount, b.TotalFreezesDuration-a.TotalFreezesDuration, b.NACKCount-a.NACKCount,
		b.Retransmitted-a.Retransmitted, b.PLICount-a.PLICount)
}

// estimates is the viewers' estimates in kbit/s at each sample after from.
func (w *capWatch) estimates(from int) string {
	var parts []string
	for k := from + 1; k < len(w.at); k++ {
		kbps := make([]string, len(w.ests[k]))
		for j, e := range w.ests[k] {
			kbps[j] = strconv.Itoa(e / 1000)
		}
		parts = append(parts, fmt.Sprintf("%.1fs %s", w.at[k].Sub(w.at[from]).Seconds(), strings.Join(kbps, "/")))
	}
	return strings.Join(parts, ", ")
}

// timeline is viewer i's width and frame rate at each sample after from.
func (w *capWatch) timeline(i, from int) string {
	var parts []string
	for k := from + 1; k < len(w.at); k++ {
		a, b := w.stats[k-1][i], w.stats[k][i]
		dt := w.at[k].Sub(w.at[k-1]).Seconds()
		if dt < 0.05 {
			continue // a mark right after a sample
		}
		parts = append(parts, fmt.Sprintf("%.1fs %dpx %.0ffps", w.at[k].Sub(w.at[from]).Seconds(), b.FrameWidth,
			float64(b.FramesDecoded-a.FramesDecoded)/dt))
	}
	return strings.Join(parts, ", ")
}

func bitrates(es []rtc.Estimate) []int {
	out := make([]int, len(es))
	for i, e := range es {
		out[i] = e.Bitrate
	}
	return out
}

// relayed starts a netimpair relay in front of node's UDP port and an HTTP proxy to node
// whose pages' sessions go through it (the answers name the relay, the offers lose their
// candidates): open the proxy's URL in a browser to play through the relay.
func relayed(t *testing.T, node *app.Node) (*netimpair.Relay, string) {
	t.Helper()
	target, err := url.Parse(node.HTTPURL())
	require.NoError(t, err)
	relay, err := netimpair.New(node.UDPAddr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = relay.Close() })
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: hideOfferCandidates(relay.Answers(node.UDPAddr(), nil)),
	})
	t.Cleanup(proxy.Close)
	return relay, proxy.URL
}

// hideOfferCandidates drops the candidates from every SDP offer sent through base: the node
// then knows the browser only by the relay's address (from its ICE checks), where a host
// candidate would let the node reach the browser directly, around the relay (pion resolves
// Chromium's mDNS names).
func hideOfferCandidates(base http.RoundTripper) http.RoundTripper {
	return roundTrip(func(req *http.Request) (*http.Response, error) {
		if req.Body == nil || req.Header.Get("Content-Type") != "application/sdp" {
			return base.RoundTrip(req)
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read offer: %w", err)
		}
		var out bytes.Buffer
		for line := range bytes.Lines(body) {
			if !bytes.HasPrefix(line, []byte("a=candidate:")) {
				out.Write(line)
			}
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(out.Bytes()))
		req.ContentLength = int64(out.Len())
		req.Header.Set("Content-Length", strconv.Itoa(out.Len()))
		return base.RoundTrip(req)
	})
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
