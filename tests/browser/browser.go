// Package browser runs headless Chromium for jetmedia's end-to-end tests: it
// finds the binary, starts one browser per test with fake camera and
// microphone, and opens tabs whose console it records so that a failing test
// can say what the page saw. It drives pages only over HTTP and must not import
// the server packages.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// EnvChromium names the environment variable that overrides the Chromium
// binary.
const EnvChromium = "JETMEDIA_CHROMIUM"

// ErrNoChromium is returned by FindChromium when no binary is installed.
var ErrNoChromium = errors.New("no Chromium found")

// FindChromium returns the Chromium binary to drive: $JETMEDIA_CHROMIUM when
// set, else /usr/bin/chromium, else chromium on PATH.
func FindChromium() (string, error) {
	if p := os.Getenv(EnvChromium); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("%w: $%s=%q: %w", ErrNoChromium, EnvChromium, p, err)
		}
		return path, nil
	}
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("%w: set $%s or install it (apt-get install chromium)", ErrNoChromium, EnvChromium)
}

// RequireChromium returns the Chromium binary, or ends t: a missing browser
// fails the test under CI (CI=true), where it would otherwise hide a broken
// setup, and skips it on a developer's machine.
func RequireChromium(t testing.TB) string {
	t.Helper()
	path, err := FindChromium()
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("BROWSER TEST CANNOT RUN IN CI: %v", err)
	}
	t.Skipf("SKIPPING BROWSER TEST: %v", err)
	return ""
}

// Browser is one headless Chromium process shared by a test's tabs.
type Browser struct {
	ctx context.Context // chromedp context that owns the process
}

// Start launches Chromium from execPath for the duration of t. The media
// flags replace the camera and microphone with a test pattern and a beep and
// grant them without a prompt, so pages can publish unattended. flags add to or override
// the defaults (name → value; true for a bare switch), e.g.
// "use-file-for-fake-audio-capture": "/tmp/x.wav" for a microphone that plays a file.
func Start(t testing.TB, execPath string, flags ...map[string]any) *Browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox, // containers and CI run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// Only one tab is in front; the others must keep their timers and
		// media pipelines running at full speed.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		// A tab without camera permission hides its host candidates behind
		// mDNS names, which a server on a machine without multicast cannot
		// resolve; and a machine with no network but loopback must still
		// produce candidates.
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		// Three simulcast layers from a 640x360 camera (Chromium otherwise sends two below
		// 960x540): simulcast tests then encode a quarter of the pixels of 720p, which a
		// loaded 2-core CI machine keeps up with.
		chromedp.Flag("force-fieldtrials", "WebRTC-LegacySimulcastLayerLimit/Disabled/"),
	}
	for _, fs := range flags {
		for name, v := range fs {
			opts = append(opts, chromedp.Flag(name, v))
		}
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the process to exit before TempDir removal
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium %s: %v", execPath, err)
	}
	return &Browser{ctx: ctx}
}

// Tab is one page of a Browser. Its console is recorded from before the
// first navigation.
type Tab struct {
	ctx  context.Context
	done chan struct{} // closed when the console recorder stops

	mu      sync.Mutex
	console []consoleLine
}

// consoleLine is a console message and how often it came in a row (a page
// that polls repeats itself).
type consoleLine struct {
	time, text string
	repeats    int
}

// Open opens url in a new tab that lives until t ends.
func (b *Browser) Open(t testing.TB, url string) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	tab := &Tab{ctx: ctx, done: make(chan struct{})}
	if err := chromedp.Do(ctx); err != nil { // attach, so Console sees the first message
		cancel()
		t.Fatalf("opening a tab: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		defer close(tab.done)
		for m, err := range messages {
			if err != nil {
				return
			}
			text := m.String()
			if m.URL != "" {
				text += fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
			}
			tab.mu.Lock()
			if n := len(tab.console); n > 0 && tab.console[n-1].text == text {
				tab.console[n-1].repeats++
			} else {
				tab.console = append(tab.console, consoleLine{time: m.Time.Format("15:04:05.000"), text: text})
			}
			tab.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-tab.done
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigating to %s: %v", url, err)
	}
	return tab
}

// Console returns the messages the page has written so far, one per line,
// with the time of the first of a run of identical messages and their count.
func (tab *Tab) Console() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	lines := make([]string, 0, len(tab.console))
	for _, l := range tab.console {
		line := l.time + " " + l.text
		if l.repeats > 0 {
			line += fmt.Sprintf(" [repeated %d more times]", l.repeats)
		}
		lines = append(lines, line)
	}
	return lines
}

// Eval evaluates the JavaScript expression in tab, awaits it when it is a
// promise, and decodes the result into T. It gives up after timeout.
func Eval[T any](tab *Tab, timeout time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(tab.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// Text returns the text content of the element with the given id, or a
// description of why it could not be read; it is meant for failure reports.
func (tab *Tab) Text(id string) string {
	s, err := Eval[string](tab, 5*time.Second,
		fmt.Sprintf(`document.getElementById(%q)?.textContent ?? "<no #%s>"`, id, id))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return strings.TrimSpace(s)
}

// PageStats is what the demo page's test hook, window.jetmedia.stats(),
// reports: WebRTC counters summed over the page's sessions and its state.
type PageStats struct {
	FramesDecoded int    `json:"framesDecoded"` // inbound video
	FramesSent    int    `json:"framesSent"`    // outbound video
	BytesReceived int64  `json:"bytesReceived"` // inbound audio and video
	State         string `json:"state"`         // the first word(s) of the status line
	// FrameWidth and FrameHeight are the inbound video's latest decoded size, PacketsLost its
	// loss count, Codec its MIME type; LayersSent counts outbound video encodings (simulcast
	// layers) that sent frames.
	FrameWidth  int    `json:"frameWidth"`
	FrameHeight int    `json:"frameHeight"`
	PacketsLost int    `json:"packetsLost"`
	LayersSent  int    `json:"layersSent"`
	Codec       string `json:"codec"`
	// AudioEnergy is the inbound audio's totalAudioEnergy, which Chromium counts only for
	// audio it plays out (the page's remote video element does).
	AudioEnergy float64 `json:"audioEnergy"`
	// The inbound video's freezes (Chromium's freezeCount and totalFreezesDuration in
	// seconds), the NACKs and PLIs it sent and the retransmissions (RTX) it received.
	FreezeCount          int     `json:"freezeCount"`
	TotalFreezesDuration float64 `json:"totalFreezesDuration"`
	NACKCount            int     `json:"nackCount"`
	PLICount             int     `json:"pliCount"`
	Retransmitted        int     `json:"retransmittedPacketsReceived"`
	// PLIsByLayer counts the PLIs each outbound video encoding received, by RID ("" without
	// simulcast).
	PLIsByLayer map[string]int `json:"plisByLayer"`
}

// Stats reads the demo page's counters.
func (tab *Tab) Stats() (PageStats, error) {
	return Eval[PageStats](tab, 5*time.Second, `window.jetmedia.stats()`)
}

// Click clicks the element with the given id like a user would.
func (tab *Tab) Click(id string) error {
	ctx, cancel := context.WithTimeout(tab.ctx, 5*time.Second)
	defer cancel()
	return chromedp.Do(ctx, chromedp.Click(chromedp.ID(id)))
}
