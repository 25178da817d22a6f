package tests

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/cmd/jetmedia/app"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/roomsapi"
	"github.com/jetmedia/jetmedia/tests/rtcclient"
)

// TestAuthRejects: against a node with a configured key, every request with a missing, bad or
// insufficient token gets 401 or 403 with a message saying why, and none of them adds an event
// to the log or disturbs the sessions it aimed at.
func TestAuthRejects(t *testing.T) {
	node := startNode(t, nodeConfig(t, "auth"))
	api := clientAPI(t)
	room, other := newRoom("auth"), newRoom("other")
	ctx := ctxT(t, 60*time.Second)

	// A publisher and a viewer whose sessions the requests below try to take over.
	pub := publishTracks(t, ctx, api, node, room)
	defer pub.Close(true)
	viewer, err := rtcclient.Play(ctx, api, node.HTTPURL(), room, asViewer(t, room))
	require.NoError(t, err)
	defer viewer.Close()
	require.Eventually(t, func() bool { return viewer.Video.Load() > 10 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, node.WaitProjected(ctx))
	before := eventCount(t, node)

	whipOffer, whepOffer := offer(t, api, webrtc.RTPTransceiverDirectionSendonly), offer(t, api, webrtc.RTPTransceiverDirectionRecvonly)
	now := time.Now()
	sign := func(key auth.Key, c auth.Claims) string {
		k, err := auth.NewKeyring(key)
		require.NoError(t, err)
		tok, err := k.Sign(c)
		require.NoError(t, err)
		return tok
	}
	forgedKey := auth.Key{ID: testKey.ID, Secret: []byte("not-the-test-secret-0123456789abcdef")}
	unknownKey := auth.Key{ID: "elsewhere", Secret: testKey.Secret}
	expired := auth.NewClaims(room, publisherIdentity, []auth.Grant{auth.Publish}, now.Add(-2*time.Hour), time.Hour)
	early := auth.NewClaims(room, publisherIdentity, []auth.Grant{auth.Publish}, now, time.Hour)
	early.NotBefore = now.Add(10 * time.Minute)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": publisherIdentity, "room": room,
		"grants": []string{"publish", "admin"}, "exp": now.Add(time.Hour).Unix()})
	none.Header["kid"] = testKey.ID
	noneTok, err := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)

	intruder := token(t, room, "intruder", auth.Publish, auth.Subscribe, auth.Data)
	cases := []struct {
		name, method, path, body string
		bearer                   string // "" sends no Authorization header
		status                   int
		says                     string
	}{
		{"whip without a token", "POST", "/whip/" + room, whipOffer, "", 401, "needs a token"},
		{"whip with an expired token", "POST", "/whip/" + room, whipOffer, sign(testKey, expired), 401, "expired"},
		{"whip with a token not valid yet", "POST", "/whip/" + room, whipOffer, sign(testKey, early), 401, "not valid before"},
		{"whip with a wrong signature", "POST", "/whip/" + room, whipOffer, sign(forgedKey, auth.NewClaims(room, publisherIdentity, []auth.Grant{auth.Publish}, now, time.Hour)), 401, "signature is invalid"},
		{"whip with an unknown key id", "POST", "/whip/" + room, whipOffer, sign(unknownKey, auth.NewClaims(room, "x", []auth.Grant{auth.Publish}, now, time.Hour)), 401, `key "elsewhere"`},
		{"whip with alg none", "POST", "/whip/" + room, whipOffer, noneTok, 401, "only HS256"},
		{"whip with a malformed token", "POST", "/whip/" + room, whipOffer, "not.a.jwt", 401, "malformed"},
		{"whip with a token for another room", "POST", "/whip/" + room, whipOffer, token(t, other, publisherIdentity, auth.Publish), 403, "is for room"},
		{"whip with a subscribe-only token", "POST", "/whip/" + room, whipOffer, token(t, room, viewerIdentity, auth.Subscribe), 403, `lacks the "publish" grant`},
		{"whep without a token", "POST", "/whep/" + room, whepOffer, "", 401, "needs a token"},
		{"whep with a publish-only token", "POST", "/whep/" + room, whepOffer, token(t, room, publisherIdentity, auth.Publish), 403, `lacks the "subscribe" grant`},
		{"whep with a token for another room", "POST", "/whep/" + room, whepOffer, token(t, other, viewerIdentity, auth.Subscribe), 403, "is for room"},
		{"whep with an expired token", "POST", "/whep/" + room, whepOffer, sign(testKey, auth.NewClaims(room, viewerIdentity, []auth.Grant{auth.Subscribe}, now.Add(-2*time.Hour), time.Hour)), 401, "expired"},
		{"whip delete by another identity", "DELETE", path(t, pub.Location), "", intruder, 403, "does not own"},
		{"whip patch by another identity", "PATCH", path(t, pub.Location), "a=end-of-candidates", intruder, 403, "does not own"},
		{"whip delete without a token", "DELETE", path(t, pub.Location), "", "", 401, "needs a token"},
		{"whip delete with the owner's token for another room", "DELETE", path(t, pub.Location), "", token(t, other, publisherIdentity, auth.Publish, auth.Admin), 403, "is for room"},
		{"whip delete with the owner's expired token", "DELETE", path(t, pub.Location), "", sign(testKey, expired), 401, "expired"},
		{"whep delete by another identity", "DELETE", path(t, viewer.Location), "", intruder, 403, "does not own"},
		{"whep patch by the publisher", "PATCH", path(t, viewer.Location), "a=end-of-candidates", token(t, room, publisherIdentity, auth.Publish), 403, "does not own"},
		{"rooms list without a token", "GET", "/v1/rooms", "", "", 401, "needs a token"},
		{"rooms list with a one-room admin token", "GET", "/v1/rooms", "", token(t, room, "ops", auth.Admin), 403, "is for room"},
		{"room state with a publish token", "GET", "/v1/rooms/" + room, "", token(t, room, publisherIdentity, auth.Publish), 403, `lacks the "admin" grant`},
		{"room state with an admin token for another room", "GET", "/v1/rooms/" + room, "", token(t, other, "ops", auth.Admin), 403, "is for room"},
		{"no dev tokens with a key configured", "GET", "/dev/token?room=" + room + "&grants=admin", "", "", 404, "not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, ctx, node, c.method, c.path, c.body, c.bearer)
			require.Equal(t, c.status, resp.StatusCode, "body: %s", body)
			require.Contains(t, body, c.says)
			if c.status == http.StatusUnauthorized {
				require.True(t, strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer "), "401 carries a Bearer challenge, got %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	require.NoError(t, node.WaitProjected(ctx))
	require.Equal(t, before, eventCount(t, node), "rejected requests write no events")
	state, err := projections.LoadRoom(ctx, node.Rooms(), room)
	require.NoError(t, err)
	require.Len(t, state.Peers, 2, "both sessions survived")
	got := viewer.Video.Load()
	require.Eventually(t, func() bool { return viewer.Video.Load() > got+10 }, 5*time.Second, 20*time.Millisecond, "media still flows")

	// The same requests with the right tokens work: admin tokens read state, an admin of the
	// room may end another identity's session, the owner ends its own.
	resp, body := do(t, ctx, node, "GET", "/v1/rooms", "", token(t, auth.AnyRoom, "ops", auth.Admin))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	resp, body = do(t, ctx, node, "GET", "/v1/rooms/"+room, "", token(t, room, "ops", auth.Admin))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var view roomsapi.RoomView
	require.NoError(t, json.Unmarshal([]byte(body), &view))
	identities := map[string]bool{}
	for _, p := range view.Peers {
		identities[p.Identity] = true
	}
	require.Equal(t, map[string]bool{publisherIdentity: true, viewerIdentity: true}, identities)
	resp, body = do(t, ctx, node, "DELETE", path(t, viewer.Location), "", token(t, room, "ops", auth.Admin))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.NoError(t, pub.Close(true), "the owner's DELETE")
	require.NoError(t, node.WaitProjected(ctx))
	require.Greater(t, eventCount(t, node), before)
	for _, e := range roomEvents(t, node.JetStream(), room) {
		require.Contains(t, []string{"system", publisherIdentity, viewerIdentity}, e.Actor, "event %s %s", e.Type, e.ID)
	}
}

// TestDevMode: a node with no key says so, mints tokens at /dev/token and still checks them on
// WHIP and WHEP; its rooms API is open without a token but checks one that is sent.
func TestDevMode(t *testing.T) {
	cfg := nodeConfig(t, "dev")
	cfg.AuthKeys = nil
	node := startNode(t, cfg)
	require.True(t, node.DevMode())
	ctx := ctxT(t, 60*time.Second)
	api := clientAPI(t)
	room := newRoom("dev")

	resp, body := do(t, ctx, node, "GET", "/dev/token?room="+room+"&identity=dev-alice&name=Alice&grants=publish,subscribe&ttl=10m", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var dt app.DevToken
	require.NoError(t, json.Unmarshal([]byte(body), &dt))
	c, err := node.Keyring().Verify(dt.Token, time.Now())
	require.NoError(t, err)
	require.Equal(t, "dev-alice", c.Identity)
	require.Equal(t, "Alice", c.Name)
	require.Equal(t, []auth.Grant{auth.Publish, auth.Subscribe}, c.Grants)
	require.WithinDuration(t, time.Now().Add(10*time.Minute), c.ExpiresAt, 5*time.Second)

	pub, err := rtcclient.Publish(ctx, api, node.HTTPURL(), room, rtcclient.WithToken(dt.Token))
	require.NoError(t, err)
	defer pub.Close(true)
	_, err = rtcclient.Publish(ctx, api, node.HTTPURL(), room)
	var he *rtcclient.HTTPError
	require.ErrorAs(t, err, &he, "dev mode still needs a token on WHIP")
	require.Equal(t, http.StatusUnauthorized, he.Status)
	// A token signed with the tests' key is not one of this node's.
	_, err = rtcclient.Publish(ctx, api, node.HTTPURL(), room, asPublisher(t, room))
	require.ErrorAs(t, err, &he)
	require.Equal(t, http.StatusUnauthorized, he.Status)

	resp, body = do(t, ctx, node, "GET", "/dev/token?format=text&room=*&grants=admin", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	admin := strings.TrimSpace(body)
	resp, body = do(t, ctx, node, "GET", "/v1/rooms", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "open without a token in dev mode: %s", body)
	resp, body = do(t, ctx, node, "GET", "/v1/rooms", "", admin)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	resp, body = do(t, ctx, node, "GET", "/v1/rooms", "", dt.Token)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a token that is sent is checked: %s", body)
	resp, body = do(t, ctx, node, "GET", "/v1/rooms/"+room, "", "garbage")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)

	for q, says := range map[string]string{
		"room=a.b":                   "not a valid id",
		"":                           "not a valid id",
		"room=r1&grants=publish,fly": `unknown grant "fly"`,
		"room=r1&ttl=48h":            "ttl",
		"room=r1&identity=a%0Ab":     "identity",
	} {
		resp, body = do(t, ctx, node, "GET", "/dev/token?"+q, "", "")
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", q, body)
		require.Contains(t, body, says, q)
	}
}

func eventCount(t *testing.T, node *app.Node) uint64 {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	stream, err := node.JetStream().Stream(ctx, eventlog.StreamEvents)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

// offer is a complete (gathered) SDP offer that sends or receives audio and video.
func offer(t *testing.T, api *webrtc.API, dir webrtc.RTPTransceiverDirection) string {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if dir == webrtc.RTPTransceiverDirectionSendonly {
			tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: map[webrtc.RTPCodecType]string{
				webrtc.RTPCodecTypeVideo: webrtc.MimeTypeVP8, webrtc.RTPCodecTypeAudio: webrtc.MimeTypeOpus}[k]}, k.String(), "s")
			require.NoError(t, err)
			_, err = pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: dir})
			require.NoError(t, err)
		} else {
			_, err = pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: dir})
			require.NoError(t, err)
		}
	}
	o, err := pc.CreateOffer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(pc)
	require.NoError(t, pc.SetLocalDescription(o))
	<-gathered
	return pc.LocalDescription().SDP
}

// path is the path of a session URL.
func path(t *testing.T, location string) string {
	t.Helper()
	i := strings.Index(location, "/wh")
	require.Positive(t, i, location)
	return location[i:]
}

// do sends one request with the content type its method and path call for.
func do(t *testing.T, ctx context.Context, node *app.Node, method, p, body, bearer string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, node.HTTPURL()+p, strings.NewReader(body))
	require.NoError(t, err)
	switch method {
	case "POST":
		req.Header.Set("Content-Type", "application/sdp")
	case "PATCH":
		req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}
