package schemas

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// signalSamples: one valid message per schema; every schema file needs one.
var signalSamples = map[string]string{
	"client.join":              `{"type":"join","version":1,"token":"eyJ.x.y","room":"r1","metadata":"{}","auto_subscribe":true,"resume":"p1.abc"}`,
	"client.offer":             `{"type":"offer","sdp":"v=0\r\n"}`,
	"client.answer":            `{"type":"answer","sdp":"v=0\r\n"}`,
	"client.candidate":         `{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
	"client.publish":           `{"type":"publish","kind":"video","source":"camera","muted":false}`,
	"client.unpublish":         `{"type":"unpublish","track":"t1"}`,
	"client.subscribe":         `{"type":"subscribe","track":"t1"}`,
	"client.unsubscribe":       `{"type":"unsubscribe","track":"t1"}`,
	"client.data":              `{"type":"data","to":"p2","payload":"hi"}`,
	"client.leave":             `{"type":"leave"}`,
	"client.mute":              `{"type":"mute","track":"t1","muted":true}`,
	"client.layer":             `{"type":"layer","track":"t1","quality":"q","width":320,"height":180}`,
	"client.update":            `{"type":"update","metadata":"{\"hand\":\"up\"}"}`,
	"server.peer_updated":      `{"type":"peer_updated","peer":{"peer":"p2","transport":"sdk","metadata":"x"}}`,
	"server.track_updated":     `{"type":"track_updated","track":{"track":"t1","peer":"p2","kind":"audio","codec":"audio/opus","source":"mic","muted":false}}`,
	"server.speakers":          `{"type":"speakers","speakers":[{"peer":"p2","track":"t1","level":23}]}`,
	"server.layers_active":     `{"type":"layers_active","layers_active":{"track":"t1","layers":["q","f"]}}`,
	"server.joined":            `{"type":"joined","version":1,"room":"r1","self":{"peer":"p1","identity":"alice","transport":"sdk"},"grants":["publish","data"],"peers":[{"peer":"p2","transport":"whip"}],"tracks":[{"track":"t1","peer":"p2","kind":"video","codec":"video/VP8","source":"camera","muted":true}],"resume_token":"p1.x","resumed":true}`,
	"server.peer_joined":       `{"type":"peer_joined","peer":{"peer":"p2","identity":"bob","name":"Bob","transport":"sdk"}}`,
	"server.peer_left":         `{"type":"peer_left","peer":{"peer":"p2","transport":"sdk"}}`,
	"server.track_published":   `{"type":"track_published","track":{"track":"t1","peer":"p2","kind":"audio","codec":"audio/opus"}}`,
	"server.track_unpublished": `{"type":"track_unpublished","track":{"track":"t1","peer":"p2","kind":"audio","codec":"audio/opus"}}`,
	"server.subscription":      `{"type":"subscription","track":{"track":"t1","peer":"p2","kind":"audio","codec":"audio/opus"},"state":"active"}`,
	"server.offer":             `{"type":"offer","sdp":"v=0\r\n"}`,
	"server.answer":            `{"type":"answer","sdp":"v=0\r\n"}`,
	"server.candidate":         `{"type":"candidate","candidate":{"candidate":""}}`,
	"server.data":              `{"type":"data","from":"p1","payload":""}`,
	"server.error":             `{"type":"error","code":"forbidden","message":"token lacks the \"data\" grant"}`,
	"server.redirect":          `{"type":"redirect","url":"ws://10.0.0.2:8080/rtc?jm_placed=a&zone=eu"}`,
}

func TestSignalSamplesValid(t *testing.T) {
	v, err := NewSignal()
	require.NoError(t, err)
	require.ElementsMatch(t, keys(signalSamples), v.Messages(), "one sample per signalling schema")
	for name, raw := range signalSamples {
		dir := name[:6]
		require.NoError(t, v.Validate(dir, []byte(raw)), name)
	}
}

func TestSignalInvalid(t *testing.T) {
	v, err := NewSignal()
	require.NoError(t, err)
	for _, tc := range []struct{ dir, raw string }{
		{FromClient, `{"type":"join","version":2,"token":"x"}`},
		{FromClient, `{"type":"join","version":1}`},
		{FromClient, `{"type":"publish","kind":"text"}`},
		{FromClient, `{"type":"data","payload":"x","to":"bad.peer"}`},
		{FromClient, `{"type":"leave","extra":1}`},
		{FromServer, `{"type":"peer_joined","peer":{"peer":"p"}}`},
		{FromServer, `{"type":"error","code":"teapot","message":"x"}`},
		{FromServer, `{"type":"redirect"}`},
		{FromServer, `{"type":"redirect","url":""}`},
		{FromClient, `[]`},
		{FromClient, `{"type":"mute","track":"t1"}`},
		{FromClient, `{"type":"mute","track":"t.1","muted":true}`},
		{FromClient, `{"type":"update"}`},
		{FromClient, `{"type":"publish","kind":"video","source":"` + strings.Repeat("s", 65) + `"}`},
		{FromClient, `{"type":"join","version":1,"token":"x","resume":""}`},
		{FromServer, `{"type":"track_updated","track":{"track":"t1","peer":"p2","kind":"audio","codec":"audio/opus","muted":"yes"}}`},
		{FromServer, `{"type":"speakers","speakers":[{"peer":"p2","track":"t1","level":128}]}`},
		{FromServer, `{"type":"layers_active","layers_active":{"track":"t1","layers":[]}}`},
		{FromServer, `{"type":"peer_updated","peer":{"peer":"p2","transport":"sdk","metadata":7}}`},
	} {
		require.ErrorIs(t, v.Validate(tc.dir, []byte(tc.raw)), ErrInvalid, tc.raw)
	}
	require.True(t, errors.Is(v.Validate(FromClient, []byte(`{"type":"joined"}`)), ErrNoSchema))
}
