package sipcall

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/tests/browser"
)

// TestSIPCallChromium: a Chromium room peer (the room SDK) publishes its fake microphone (a
// beep) and auto-subscribes; baresip calls in. The phone's recording has the beep's energy and
// Chromium decodes the caller's track with audio energy (totalAudioEnergy).
func TestSIPCallChromium(t *testing.T) {
	chromium := browser.RequireChromium(t)
	bin := requireBaresip(t)
	loadOpus(t)
	node := startSIPNode(t)
	room := newRoom("sipweb")
	b := browser.Start(t, chromium)
	tab := b.Open(t, node.HTTPURL()+"/room.html") // for its origin; the script uses the SDK
	tok := token(t, room, "web", auth.Publish, auth.Subscribe)
	_, err := browser.Eval[bool](tab, 30*time.Second, fmt.Sprintf(`(async () => {
		const { Room } = await import("/sdk/jetmedia.js");
		const room = new Room({ token: %q });
		window.testRoom = room;
		// Chromium computes totalAudioEnergy on played-out audio: play every remote track.
		room.addEventListener("track", ({ detail }) => {
			const a = new Audio(); a.srcObject = new MediaStream([detail.track]); a.play(); (window.players ??= []).push(a);
		});
		await room.join();
		const [mic] = (await navigator.mediaDevices.getUserMedia({ audio: true })).getAudioTracks();
		await room.publish(mic, { source: "microphone" });
		return true })()`, tok))
	require.NoError(t, err, "console:\n%s", strings.Join(tab.Console(), "\n"))
	require.Eventually(t, func() bool {
		r, err := projections.LoadRoom(ctxT(t, 5*time.Second), node.Rooms(), room)
		return err == nil && len(r.Tracks) == 1
	}, 20*time.Second, 50*time.Millisecond, "Chromium's microphone track is published")

	phone := startBaresip(t, bin, sipUser, sipPass, phoneHz)
	phone.command("dial", "sip:"+room+"@"+node.SIPAddr())
	phone.waitEvent("CALL_ESTABLISHED", 20*time.Second)
	peer := sipPeer(t, node, room)
	r, err := projections.LoadRoom(ctxT(t, 5*time.Second), node.Rooms(), room)
	require.NoError(t, err)
	var sipTrack string
	for id, tr := range r.Tracks {
		if tr.Peer == peer {
			sipTrack = id
		}
	}
	require.NotEmpty(t, sipTrack)

	var energy float64
	require.Eventually(t, func() bool {
		energy, err = browser.Eval[float64](tab, 5*time.Second, fmt.Sprintf(`(async () => {
			const rt = window.testRoom.remoteTrack(%q);
			if (!rt) return 0;
			const st = await rt.receiver.getStats();
			return [...st.values()].filter((s) => s.type === "inbound-rtp").reduce((a, s) => a + (s.totalAudioEnergy ?? 0), 0) })()`, sipTrack))
		return err == nil && energy > 0.05
	}, 20*time.Second, 200*time.Millisecond, "Chromium hears the caller: totalAudioEnergy %v (%v); %s", energy, err, diagnose(tab))
	t.Logf("Chromium's totalAudioEnergy of the caller's track: %.3f", energy)
	time.Sleep(2 * time.Second) // the phone records the beeps meanwhile
	phone.command("hangup", "")
	phone.waitEvent("CALL_CLOSED", 10*time.Second)

	rec, rate := phone.recording()
	var peak float64
	for i := 0; i+rate/10 <= len(rec); i += rate / 10 {
		peak = max(peak, rms(rec[i:i+rate/10]))
	}
	t.Logf("phone's recording: %d samples, loudest 100 ms rms %.0f", len(rec), peak)
	require.Greater(t, peak, 1000.0, "the phone heard Chromium's beeps")
}

func diagnose(tab *browser.Tab) string {
	d, err := browser.Eval[string](tab, 5*time.Second, `(async () => {
		const r = window.testRoom;
		const out = { tracks: [...r.tracks.keys()] };
		for (const id of r.tracks.keys()) {
			const rt = r.remoteTrack(id);
			if (!rt) { out[id] = "no remote"; continue }
			const st = await rt.receiver.getStats();
			out[id] = [...st.values()].filter((s) => s.type === "inbound-rtp").map((s) => ({ p: s.packetsReceived, e: s.totalAudioEnergy, c: s.codecId }));
		}
		return JSON.stringify(out) })()`)
	return fmt.Sprintf("%s %v\nconsole:\n%s", d, err, strings.Join(tab.Console(), "\n"))
}
