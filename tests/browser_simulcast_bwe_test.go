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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/tests/browser"
	"github.com/jetmedia/jetmedia/tests/netimpair"
)

// TestBrowserSimulcastFollowsCap: a Chromium simulcast publisher (q, h, f) and a Chromium
// WHEP viewer whose page and media go through tests/netimpair (an HTTP proxy rewrites the
// node's candidate in the answer to the relay's). The viewer starts on the top layer; its
// downlink capped at 300 kbit/s, the node's congestion control moves it to a lower layer
// and it keeps decoding; the cap lifted, it climbs back to the top layer. Times and widths
// are logged (docs/benchmarks.md), not asserted; the bounds are liveness.
func TestBrowserSimulcastFollowsCap(t *testing.T) {
	chromium := browser.RequireChromium(t)
	node := startDevNode(t, "browser-simulcast-bwe", func(c *app.Config) { c.UDPHost = "127.0.0.1" })
	relay, err := netimpair.New(node.UDPAddr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = relay.Close() })
	target, err := url.Parse(node.HTTPURL())
	require.NoError(t, err)
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: hideOfferCandidates(relay.Answers(node.UDPAddr(), nil)),
	})
	t.Cleanup(proxy.Close)

	b := browser.Start(t, chromium)
	room := "simulcast-bwe-" + strings.ToLower(rand.Text()[:10])
	publisher := b.Open(t, node.HTTPURL()+"/?"+url.Values{"room": {room}, "auto": {"publish"}, "simulcast": {"1"},
		"codec": {"VP8"}, "video": {"1280x720"}}.Encode())
	var viewer *browser.Tab
	diagnose := func() string {
		var sb strings.Builder
		if cc := node.Congestion(); cc != nil {
			fmt.Fprintf(&sb, "\ncongestion: layer downs %d ups %d, pauses %d resumes %d; estimates %+v; relay down %+v",
				cc.LayerDowns.Load(), cc.LayerUps.Load(), cc.Pauses.Load(), cc.Resumes.Load(), node.Estimates().All(), relay.Down())
		}
		for name, tab := range map[string]*browser.Tab{"publisher": publisher, "viewer": viewer} {
			if tab == nil {
				continue
			}
			st, err := tab.Stats()
			fmt.Fprintf(&sb, "\n--- %s\nstatus: %s\nstats: %+v (err %v)\nconsole:\n%s\n", name, tab.Text("status"), st, err, tabConsole(tab))
		}
		return sb.String()
	}
	wait := func(tab *browser.Tab, what string, timeout time.Duration, ok func(browser.PageStats) bool) browser.PageStats {
		t.Helper()
		return waitStats(t, tab, what, timeout, ok, diagnose)
	}
	wait(publisher, "the publisher sends three layers", 30*time.Second, func(s browser.PageStats) bool {
		return s.State == "publishing" && s.LayersSent == 3
	})
	viewer = b.Open(t, proxy.URL+"/?"+url.Values{"room": {room}, "auto": {"play"}}.Encode())
	st := wait(viewer, "the viewer decodes", 30*time.Second, func(s browser.PageStats) bool {
		return s.FramesDecoded > 30 && s.FrameWidth > 0
	})
	top := st.FrameWidth
	require.Positive(t, relay.Down().PassedBytes, "the viewer's media goes through the relay")
	cc := node.Congestion()
	require.NotNil(t, cc, "BWE is on by default")
	d0, at0 := relay.Down(), time.Now()
	time.Sleep(3 * time.Second)
	d1 := relay.Down()
	t.Logf("uncapped: width %d (top layer), %.0f bit/s through the relay, %+v", top,
		float64(d1.PassedBytes-d0.PassedBytes)*8/time.Since(at0).Seconds(), st)

	const capRate = 300_000
	relay.SetDown(netimpair.Link{Rate: capRate})
	capped := time.Now()
	st = wait(viewer, "the capped viewer gets a lower layer", 30*time.Second, func(s browser.PageStats) bool {
		return s.FrameWidth > 0 && s.FrameWidth < top
	})
	lowered := time.Since(capped)
	// Keeps decoding under the cap; each second's width and frames are logged.
	var timeline []string
	last := st
	for range 8 {
		time.Sleep(time.Second)
		if s, err := viewer.Stats(); err == nil {
			timeline = append(timeline, fmt.Sprintf("%dpx %d fps", s.FrameWidth, s.FramesDecoded-last.FramesDecoded))
			last = s
		}
	}
	t.Logf("under the cap, per second: %s", strings.Join(timeline, ", "))
	under := wait(viewer, "the capped viewer keeps decoding", 10*time.Second, func(s browser.PageStats) bool {
		return s.FramesDecoded > st.FramesDecoded
	})
	e, _ := viewerEstimate(node)
	t.Logf("cap %d bit/s: width %d after %v; 8 s later width %d, %d frames decoded meanwhile; estimate %d (congested %v); layer downs %d ups %d, pauses %d",
		capRate, st.FrameWidth, lowered.Round(100*time.Millisecond), under.FrameWidth, under.FramesDecoded-st.FramesDecoded,
		e.Bitrate, e.Congested, cc.LayerDowns.Load(), cc.LayerUps.Load(), cc.Pauses.Load())
	require.Positive(t, cc.LayerDowns.Load(), "congestion control lowered the layer")

	relay.SetDown(netimpair.Link{})
	freed := time.Now()
	st = wait(viewer, "the freed viewer climbs back to the top layer", 90*time.Second, func(s browser.PageStats) bool {
		return s.FrameWidth == top
	})
	e, _ = viewerEstimate(node)
	t.Logf("cap lifted: width %d after %v; estimate %d; layer downs %d ups %d, pauses %d resumes %d",
		st.FrameWidth, time.Since(freed).Round(100*time.Millisecond), e.Bitrate, cc.LayerDowns.Load(), cc.LayerUps.Load(),
		cc.Pauses.Load(), cc.Resumes.Load())
	wait(viewer, "the viewer keeps decoding at the top layer", 10*time.Second, func(s browser.PageStats) bool {
		return s.FramesDecoded > st.FramesDecoded+10
	})
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
