package tests

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// TestBadInput: malformed or unwanted requests get the status the WHIP/WHEP specifications
// name and a message saying what is wrong; nothing panics and nothing reaches the event log.
func TestBadInput(t *testing.T) {
	node := startNode(t, nodeConfig(t, "bad"))
	ctx := ctxT(t, 30*time.Second)
	stream, err := node.JetStream().Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	before := info.State.Msgs

	validOffer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 " +
		strings.Repeat("AB:", 31) + "AB\r\na=setup:actpass\r\na=rtpmap:96 VP8/90000\r\n"
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		says                            string
	}{
		{"malformed SDP", "POST", "/whip/room1", "application/sdp", "this is not SDP", 400, "malformed SDP"},
		{"empty body", "POST", "/whip/room1", "application/sdp", "", 400, "malformed SDP"},
		{"wrong content type", "POST", "/whip/room1", "application/json", `{"sdp":"x"}`, 415, "application/sdp"},
		{"no content type", "POST", "/whep/room1", "", validOffer, 415, "application/sdp"},
		{"oversized body", "POST", "/whip/room1", "application/sdp", strings.Repeat("a=x\r\n", 20000), 413, "larger than"},
		{"invalid room", "POST", "/whip/bad.room", "application/sdp", validOffer, 400, "not a valid id"},
		{"room too long", "POST", "/whep/" + strings.Repeat("r", 65), "application/sdp", validOffer, 400, "not a valid id"},
		{"whip offer that only receives", "POST", "/whip/room1", "application/sdp", validOffer, 400, "sends no audio or video"},
		{"whep with nothing published", "POST", "/whep/room1", "application/sdp", validOffer, 409, "no published track"},
		{"whep unknown peer", "POST", "/whep/room1/nobody", "application/sdp", validOffer, 404, "not in room"},
		{"delete unknown whip session", "DELETE", "/whip/room1/nosuchsession", "", "", 404, "no session"},
		{"delete unknown whep session", "DELETE", "/whep/room1/s/nosuchsession", "", "", 404, "no session"},
		{"patch unknown session", "PATCH", "/whip/room1/nosuchsession", "application/trickle-ice-sdpfrag", "a=candidate:1 1 udp 1 127.0.0.1 9 typ host", 404, "no session"},
		{"unknown room state", "GET", "/v1/rooms/never-seen", "", "", 404, "no history"},
	}
	// A token that allows everything, so that these requests fail for what they carry (the
	// auth failures are in auth_test.go).
	all := "Bearer " + token(t, auth.AnyRoom, "bad-input", auth.Grants...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, c.method, node.HTTPURL()+c.path, strings.NewReader(c.body))
			require.NoError(t, err)
			req.Header.Set("Authorization", all)
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			require.Equal(t, c.status, resp.StatusCode, "body: %s", body)
			require.Contains(t, string(body), c.says)
			if c.status == http.StatusConflict {
				require.NotEmpty(t, resp.Header.Get("Retry-After"))
			}
		})
	}
	info, err = stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, before, info.State.Msgs, "rejected requests write no events")

	// The node still works after all that.
	resp, err := http.Get(node.HTTPURL() + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
