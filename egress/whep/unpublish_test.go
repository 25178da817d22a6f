package whep

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// A track that ended before a viewer's session was indexed is reported to it at once, and a
// catalog answer naming it is caught before the session starts; ends are forgotten after
// endedMemory.
func TestPlayingRemembersEndedTracks(t *testing.T) {
	var p playing
	t0 := time.Unix(1000, 0)
	require.Empty(t, p.end("r", "old-video", t0), "no viewer to tell yet")
	p.end("r", "old-audio", t0)
	require.ElementsMatch(t, []string{"old-video", "old-audio"}, p.endedOf("r", []string{"old-video", "old-audio", "new"}))
	require.Empty(t, p.endedOf("other", []string{"old-video"}), "per room")
	require.Equal(t, []string{"old-video"}, p.add("r", nil, &viewer{}, []string{"old-video", "new"}),
		"a session indexed after the end hears of it")
	require.Len(t, p.end("r", "new", t0.Add(time.Second)), 1, "an indexed viewer is told")
	p.end("r", "later", t0.Add(endedMemory+2*time.Second))
	require.Equal(t, []string{"later"}, p.endedOf("r", []string{"old-video", "old-audio", "new", "later"}),
		"ends older than endedMemory are forgotten")
}

// The recheck asks, per room, about the tracks the room's viewers play, once each, leaving
// out those whose end the node heard already.
func TestPlayingPlayed(t *testing.T) {
	var p playing
	core := func(tracks ...string) *viewer {
		return &viewer{core: NewCore(rtc.Timeouts{}, rtc.Peer{ID: "v"}, "pub", tracks)}
	}
	s1, s2, s3 := &rtc.Session{}, &rtc.Session{}, &rtc.Session{}
	require.Empty(t, p.played())
	p.add("r", s1, core("v1", "a1"), []string{"v1", "a1"})
	p.add("r", s2, core("v1"), []string{"v1"})
	p.add("q", s3, core("x"), []string{"x"})
	require.Equal(t, map[string][]string{"r": {"a1", "v1"}, "q": {"x"}}, p.played())
	p.end("r", "v1", time.Unix(1000, 0))
	p.end("q", "x", time.Unix(1000, 0))
	require.Equal(t, map[string][]string{"r": {"a1"}}, p.played(), "ended tracks are not asked about")
	p.remove("r", s1)
	require.Empty(t, p.played())
}
