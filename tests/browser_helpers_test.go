package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/tests/browser"
)

// startDevNode starts a node for a browser test: nodeConfig without an auth key (dev mode,
// the pages take their tokens from /dev/token), then edit if given. Closing it at cleanup
// must succeed; a browser started after it is cleaned up before it.
func startDevNode(t *testing.T, name string, edit func(*app.Config)) *app.Node {
	t.Helper()
	cfg := nodeConfig(t, name)
	cfg.AuthKeys = nil
	if edit != nil {
		edit(&cfg)
	}
	node := startNode(t, cfg)
	require.True(t, node.DevMode())
	// Registered after startNode's cleanup, so it runs first and sees Close's error.
	t.Cleanup(func() {
		if err := node.Close(); err != nil {
			t.Errorf("closing the node: %v", err)
		}
	})
	return node
}

// tabConsole is a tab's console, one indented line per message, for failure messages.
func tabConsole(tab *browser.Tab) string {
	console := tab.Console()
	if len(console) == 0 {
		return "  (empty)"
	}
	return "  " + strings.Join(console, "\n  ")
}

// waitTab polls cond, a JavaScript expression or a promise of one, in tab until it is true
// (an expression that throws counts as false). Past timeout the test fails with what, the
// last error and diagnose's report of what the pages saw.
func waitTab(t *testing.T, tab *browser.Tab, timeout time.Duration, what, cond string, diagnose func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := browser.Eval[bool](tab, 10*time.Second, `(async () => { try { return Boolean(await (`+cond+`)) } catch { return false } })()`)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last error %v)%s", what, timeout, err, diagnose())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStats polls tab's page stats until ok accepts them and returns them. Past timeout the
// test fails with what, the last stats and diagnose's report of what the pages saw.
func waitStats(t *testing.T, tab *browser.Tab, what string, timeout time.Duration, ok func(browser.PageStats) bool, diagnose func() string) browser.PageStats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := tab.Stats()
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last %+v, err %v)%s", what, timeout, st, err, diagnose())
		}
		time.Sleep(250 * time.Millisecond)
	}
}
