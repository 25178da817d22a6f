package signal

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// FuzzCoreInput feeds arbitrary client messages and KV values to a joined core: bad input gets
// an error message or nothing, never a panic, and events are only ever the core's own peer's.
func FuzzCoreInput(f *testing.F) {
	for _, s := range []string{
		`{"type":"mute","track":"t1","muted":true}`,
		`{"type":"mute","track":"t1"}`,
		`{"type":"update","metadata":"x"}`,
		`{"type":"publish","kind":"video","source":"camera","muted":false}`,
		`{"type":"unpublish","track":"t1"}`,
		`{"type":"data","to":"bob","payload":"hi"}`,
		`{"type":"join","resume":"me.x"}`,
		`{"type":"leave"}`,
		`{"type":7}`,
	} {
		f.Add(s, `{"peer":"bob","transport":"sdk","metadata":"m"}`)
	}
	f.Fuzz(func(t *testing.T, msg, kv string) {
		c := NewCore(rtc.Timeouts{}, "r1", "me", "n1", auth.Claims{Room: "r1", Identity: "alice", Grants: []auth.Grant{auth.Publish, auth.Subscribe, auth.Data}}, true)
		c.Joined(t0, "", "")
		c.SetJoinOptions(JoinOptions{ResumeToken: "me.secret", Grace: 10 * time.Second})
		c.KVPut(t0, "r1.peer.bob", []byte(kv))
		c.KVPut(t0, "r1.track.tb", []byte(kv))
		c.KVReady(t0)
		c.Message(t0, ClientMessage{Type: TypePublish, Kind: "video"})
		c.TrackStarted(t0, TrackSpec{Track: "t1", Peer: "me", Kind: "video", Codec: "video/VP8"})
		var m ClientMessage
		if json.Unmarshal([]byte(msg), &m) != nil {
			return
		}
		out := c.Message(t0, m)
		for _, e := range out.Events {
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			var p struct{ Peer string }
			if json.Unmarshal(b, &p) != nil || p.Peer != "me" {
				t.Fatalf("event %s is not about this peer", b)
			}
		}
		c.KVPut(t0, "r1.peer.bob", []byte(msg))
		c.KVPut(t0, "r1.track.tb", []byte(msg))
		c.SocketClosed(t0)
		c.Resume(t0, auth.Claims{Identity: "alice"}, m.Resume)
	})
}
