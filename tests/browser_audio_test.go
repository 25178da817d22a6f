package tests

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/tests/browser"
)

// writeWAV writes 16-bit mono PCM at rate to path.
func writeWAV(t *testing.T, path string, rate int, samples []int16) {
	t.Helper()
	data := make([]byte, 44+2*len(samples))
	copy(data, "RIFF")
	binary.LittleEndian.PutUint32(data[4:], uint32(36+2*len(samples)))
	copy(data[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(data[16:], 16)
	binary.LittleEndian.PutUint16(data[20:], 1) // PCM
	binary.LittleEndian.PutUint16(data[22:], 1) // mono
	binary.LittleEndian.PutUint32(data[24:], uint32(rate))
	binary.LittleEndian.PutUint32(data[28:], uint32(2*rate))
	binary.LittleEndian.PutUint16(data[32:], 2)
	binary.LittleEndian.PutUint16(data[34:], 16)
	copy(data[36:], "data")
	binary.LittleEndian.PutUint32(data[40:], uint32(2*len(samples)))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(data[44+2*i:], uint16(s))
	}
	require.NoError(t, os.WriteFile(path, data, 0o600))
}

// speechLike is d of a voice-like signal: a 150 Hz fundamental with harmonics (a vowel),
// its loudness swinging at a syllable rate of 4 per second, with a short pause every 1.5 s
// (words), at about -12 dBFS at its loudest.
func speechLike(rate int, d time.Duration) []int16 {
	n := int(d.Seconds() * float64(rate))
	out := make([]int16, n)
	for i := range out {
		ts := float64(i) / float64(rate)
		var v float64
		for h, a := range []float64{1, 0.6, 0.4, 0.25, 0.15} {
			v += a * math.Sin(2*math.Pi*150*float64(h+1)*ts)
		}
		env := 0.35 + 0.65*math.Abs(math.Sin(2*math.Pi*2*ts)) // 4 syllables a second
		if math.Mod(ts, 1.5) > 1.35 {                         // a 150 ms pause between words
			env = 0
		}
		out[i] = int16(v / 2.4 * env * 0.25 * math.MaxInt16)
	}
	return out
}

// audioPeerJS joins room from a page of the node with a dev token for identity and, if mic,
// publishes the (fake, file-fed) microphone without echo cancellation, noise suppression or
// gain control (a steady test signal is what noise suppression removes). It records every
// speakers event in window.t.speakers and returns the peer id.
func audioPeerJS(room, identity string, mic bool) string {
	grants := "subscribe"
	if mic {
		grants = "publish,subscribe"
	}
	return fmt.Sprintf(`(async () => {
  const { Room } = await import("/sdk/jetmedia.js");
  const res = await fetch("/dev/token?room=%s&identity=%s&name=%s&grants=%s");
  const { token } = await res.json();
  const room = new Room({ token });
  window.t = { room, speakers: [] };
  room.addEventListener("speakers", ({ detail }) => window.t.speakers.push({ at: Date.now(), peers: detail.speakers.map((s) => s.peer) }));
  await room.join();
  if (%v) {
    const media = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    window.t.mic = await room.publish(media.getAudioTracks()[0], { source: "mic" });
  }
  return room.self.peer;
})()`, room, identity, identity, grants, mic)
}

// inboundAudioJS is the viewer's audio packets received per publishing peer (getStats of
// each received audio track's receiver).
const inboundAudioJS = `(async () => {
  const out = {};
  for (const [id, t] of window.t.room.tracks) {
    if (t.kind !== "audio") continue;
    const rt = window.t.room.remoteTrack(id);
    if (!rt) continue;
    for (const s of (await rt.receiver.getStats()).values()) {
      if (s.type === "inbound-rtp") out[t.peer] = (out[t.peer] ?? 0) + s.packetsReceived;
    }
  }
  return out;
})()`

// TestBrowserActiveSpeaker: two Chromium publishers whose microphones play files made here,
// one speech-like, one silence, and a third Chromium that only listens, on a node with
// --max-audio-streams 1. The listener's speakers event names the talker and never the silent
// one; the log records speaker.changed for the talker only, a few of them, not a stream of
// levels; the listener receives the talker's audio packets and none of the silent one's. The
// talker then mutes and unmutes: how long the listener took to see it stop and start again is
// logged (figures for docs/audio.md, not pass/fail bounds).
func TestBrowserActiveSpeaker(t *testing.T) {
	chromium := browser.RequireChromium(t)
	dir := t.TempDir()
	const rate = 48000
	speech, silence := filepath.Join(dir, "speech.wav"), filepath.Join(dir, "silence.wav")
	writeWAV(t, speech, rate, speechLike(rate, 6*time.Second))
	writeWAV(t, silence, rate, make([]int16, 6*rate))

	node := startDevNode(t, "browser-speaker", func(c *app.Config) { c.MaxAudioStreams = 1 })
	room := newRoom("speak")
	type peer struct {
		name, file string
		tab        *browser.Tab
		id         string
	}
	peers := []*peer{{name: "talker", file: speech}, {name: "silent", file: silence}, {name: "listener"}}
	diagnose := func() string {
		var sb strings.Builder
		for _, p := range peers {
			if p.tab == nil {
				continue
			}
			st, err := browser.Eval[string](p.tab, 5*time.Second, `JSON.stringify({state: window.t?.room?.state, speakers: window.t?.speakers?.slice(-5),
				tracks: [...(window.t?.room?.tracks?.values() ?? [])], pc: window.t?.room?.peerConnection?.connectionState})`)
			fmt.Fprintf(&sb, "\n--- %s (peer %s): %s (err %v)\nconsole:\n%s", p.name, p.id, st, err, tabConsole(p.tab))
		}
		return sb.String()
	}
	for _, p := range peers {
		var b *browser.Browser
		if p.file != "" {
			b = browser.Start(t, chromium, map[string]any{"use-file-for-fake-audio-capture": p.file})
		} else {
			b = browser.Start(t, chromium)
		}
		p.tab = b.Open(t, node.HTTPURL()+"/room.html")
		id, err := browser.Eval[string](p.tab, 30*time.Second, audioPeerJS(room, "web-"+p.name, p.file != ""))
		require.NoError(t, err, "%s joins%s", p.name, diagnose())
		p.id = id
	}
	talker, silent, listener := peers[0], peers[1], peers[2]

	// The listener hears of the talker as the (only) speaker.
	waitTab(t, listener.tab, 20*time.Second, "the listener's speakers event names the talker",
		fmt.Sprintf(`window.t.speakers.some((s) => s.peers[0] === %q)`, talker.id), diagnose)

	// Top-1 audio: over 3 s the listener gets the talker's packets and none of the silent
	// peer's (its gate closed once both tracks had reported a level).
	waitTab(t, listener.tab, 10*time.Second, "the listener receives both audio tracks", `window.t.room.tracks.size === 2`, diagnose)
	before, err := browser.Eval[map[string]float64](listener.tab, 10*time.Second, inboundAudioJS)
	require.NoError(t, err)
	time.Sleep(3 * time.Second)
	after, err := browser.Eval[map[string]float64](listener.tab, 10*time.Second, inboundAudioJS)
	require.NoError(t, err)
	t.Logf("listener's inbound audio packets over 3 s: talker %v -> %v, silent %v -> %v", before[talker.id], after[talker.id], before[silent.id], after[silent.id])
	require.Greater(t, after[talker.id]-before[talker.id], 50.0, "the talker's audio reaches the listener (20 ms packets)%s", diagnose())
	require.Zero(t, after[silent.id]-before[silent.id], "with --max-audio-streams 1 the silent peer's audio is not forwarded%s", diagnose())

	// Mute and unmute: stop after the hold, start again; the figures go to the log.
	for round := range 2 {
		muteAt, err := browser.Eval[float64](talker.tab, 10*time.Second, `(async () => { await window.t.mic.mute(); return Date.now(); })()`)
		require.NoError(t, err)
		waitTab(t, listener.tab, 10*time.Second, "the listener sees the talker stop", fmt.Sprintf(`(() => { const l = window.t.speakers.at(-1); return l.at >= %f && l.peers.length === 0; })()`, muteAt), diagnose)
		stopAt, err := browser.Eval[float64](listener.tab, 5*time.Second, `window.t.speakers.at(-1).at`)
		require.NoError(t, err)
		unmuteAt, err := browser.Eval[float64](talker.tab, 10*time.Second, `(async () => { await window.t.mic.unmute(); return Date.now(); })()`)
		require.NoError(t, err)
		waitTab(t, listener.tab, 10*time.Second, "the listener sees the talker speak again", fmt.Sprintf(`(() => { const l = window.t.speakers.at(-1); return l.at >= %f && l.peers[0] === %q; })()`, unmuteAt, talker.id), diagnose)
		startAt, err := browser.Eval[float64](listener.tab, 5*time.Second, `window.t.speakers.at(-1).at`)
		require.NoError(t, err)
		t.Logf("round %d: mute -> listener's speakers [] after %.0f ms (hold 1 s); unmute -> listener's speakers [talker] after %.0f ms",
			round, stopAt-muteAt, startAt-unmuteAt)
	}

	// The log: speaker.changed names the talker, never the silent peer, and holds a few
	// changes, not levels.
	var changes []events.SpeakerChanged
	for _, e := range roomEvents(t, node.JetStream(), room) {
		pl, err := e.Payload()
		require.NoError(t, err)
		if p, ok := pl.(events.SpeakerChanged); ok {
			changes = append(changes, p)
		}
	}
	t.Logf("speaker.changed events in the log: %d (%+v)", len(changes), changes)
	require.NotEmpty(t, changes)
	require.Equal(t, talker.id, changes[0].Peer)
	require.True(t, changes[0].Speaking)
	for _, c := range changes {
		require.NotEqual(t, silent.id, c.Peer, "the silent peer never speaks")
	}
	require.LessOrEqual(t, len(changes), 12, "a few changes for two mute rounds, not a stream of levels")
	requireSchemaValid(t, node.JetStream())
}
