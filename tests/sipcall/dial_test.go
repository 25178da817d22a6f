package sipcall

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
)

func postDial(t *testing.T, url, tok, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 70*time.Second), http.MethodPost, url, bytes.NewBufferString(body))
	require.NoError(t, err)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = res.Body.Close() })
	return res
}

// TestSIPDialOut: POST /v1/rooms/{room}/sip/dial with an admin token invites a baresip that
// answers by itself; it becomes a peer of the room, hears the room's tone, and its hang-up
// ends it. Without the admin grant the request is refused and nothing is dialled.
func TestSIPDialOut(t *testing.T) {
	bin := requireBaresip(t)
	lib := loadOpus(t)
	node := startSIPNode(t)
	room := newRoom("sipdial")
	publishTone(t, node, room, lib, roomHz)
	phone := startBaresipWith(t, bin, "bob", "unused", phoneHz, ";answermode=auto")
	url := node.HTTPURL() + "/v1/rooms/" + room + "/sip/dial"
	target := `{"uri":"sip:bob@127.0.0.1:` + strconv.Itoa(phone.port) + `"}`

	require.Equal(t, http.StatusUnauthorized, postDial(t, url, "", target).StatusCode)
	require.Equal(t, http.StatusForbidden, postDial(t, url, token(t, room, "op", auth.Publish), target).StatusCode)
	require.Equal(t, http.StatusBadRequest, postDial(t, url, token(t, room, "op", auth.Admin), `{"uri":"mailto:x"}`).StatusCode)

	res := postDial(t, url, token(t, room, "op", auth.Admin), target)
	require.Equal(t, http.StatusCreated, res.StatusCode)
	phone.waitEvent("CALL_ESTABLISHED", 20*time.Second)
	peer := sipPeer(t, node, room)
	heard := listen(t, node, room, peer, lib)
	require.Eventually(t, func() bool { return len(heard.samples()) >= 2*8000 }, 20*time.Second, 100*time.Millisecond)
	phone.waitRecorded(3*time.Second, 30*time.Second)
	phone.command("hangup", "")
	require.Eventually(t, func() bool {
		for _, e := range roomEvents(t, node, room) {
			if l, ok := payload(t, e).(events.PeerLeft); ok && l.Peer == peer {
				require.Equal(t, "closed", l.Reason)
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "peer.left of the dialled phone")
	rec, rate := phone.recording()
	rec = rec[rate/2:]
	t.Logf("dialled phone's recording: %d samples, rms %.0f", len(rec), rms(rec))
	require.Greater(t, goertzel(rec, rate, roomHz), 50*goertzel(rec, rate, phoneHz), "the dialled phone heard the room")
	got := heard.samples()[4000:]
	require.Greater(t, goertzel(got, 8000, phoneHz), 50*goertzel(got, 8000, roomHz), "the room heard the dialled phone")
}
