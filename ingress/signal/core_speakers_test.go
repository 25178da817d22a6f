package signal

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/audiolevel"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// TestCoreUnrecordedSpeakerChange: a speaker.changed the log refused is not the client's
// change, so the client is not told to retry it.
func TestCoreUnrecordedSpeakerChange(t *testing.T) {
	c := publishedCore(t, 0)
	err := errors.New("log down")
	require.Empty(t, c.Unrecorded(t0, []events.Payload{events.SpeakerChanged{Peer: "me", Track: "t1", Speaking: true}}, err).Send)
	out := c.Unrecorded(t0, []events.Payload{events.SpeakerChanged{Peer: "me", Track: "t1"}, events.PeerUpdated{Peer: "me", Metadata: "x"}}, err)
	require.Len(t, out.Send, 1)
	require.Equal(t, CodeUnavailable, out.Send[0].Code)
	require.NotContains(t, out.Send[0].Message, "speaker.changed")
}

func TestCoreSpeakers(t *testing.T) {
	c := publishedCore(t, 0)
	c.KVPut(t0, "r1.track.ta", val(t, TrackSpec{Peer: "bob", Kind: "audio", Codec: "audio/opus"}))
	require.Empty(t, c.Speakers(t0, nil).Send, "nobody speaking at first is not news")
	out := c.Speakers(t0, []audiolevel.Speaker{{Track: "ta", Level: 20}, {Track: "unknown", Level: 10}})
	require.Equal(t, []ServerMessage{{Type: TypeSpeakers, Speakers: []SpeakerInfo{{Peer: "bob", Track: "ta", Level: 20}}}}, out.Send,
		"speakers named by peer; a track the client does not know yet is left out")
	require.Empty(t, c.Speakers(t0, []audiolevel.Speaker{{Track: "ta", Level: 20}}).Send, "the same list again")
	out = c.Speakers(t0, nil)
	require.Equal(t, []ServerMessage{{Type: TypeSpeakers, Speakers: []SpeakerInfo{}}}, out.Send, "nobody speaks any more")

	fresh := NewCore(rtc.Timeouts{}, "r1", "me", "n1", claims(auth.Subscribe), true)
	fresh.Joined(t0, "", "")
	require.Empty(t, fresh.Speakers(t0, []audiolevel.Speaker{{Track: "ta", Level: 20}, {Track: "tz", Level: 30}}).Send, "nothing before joined")
	fresh.KVPut(t0, "r1.track.ta", val(t, TrackSpec{Peer: "bob", Kind: "audio", Codec: "audio/opus"}))
	out = fresh.KVReady(t0)
	require.Equal(t, ServerMessage{Type: TypeSpeakers, Speakers: []SpeakerInfo{{Peer: "bob", Track: "ta", Level: 20}}}, out.Send[len(out.Send)-1],
		"a client that joins while someone speaks hears of it with its snapshot")
	out = fresh.KVPut(t0, "r1.track.tz", val(t, TrackSpec{Peer: "zoe", Kind: "audio", Codec: "audio/opus"}))
	require.Equal(t, ServerMessage{Type: TypeSpeakers, Speakers: []SpeakerInfo{{Peer: "bob", Track: "ta", Level: 20}, {Peer: "zoe", Track: "tz", Level: 30}}}, out.Send[len(out.Send)-1],
		"and again when it learns of a ranked track")
}
