package rtc

import (
	"testing"

	"github.com/pion/sdp/v3"
	"github.com/stretchr/testify/require"
)

func TestOrderLayers(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"f", "h", "q"}, []string{"q", "h", "f"}},
		{[]string{"q", "h", "f"}, []string{"q", "h", "f"}},
		{[]string{"h", "m", "l"}, []string{"l", "m", "h"}},
		{[]string{"high", "low"}, []string{"low", "high"}},
		{[]string{"2", "0", "1"}, []string{"0", "1", "2"}},
		{[]string{"b", "a"}, []string{"b", "a"}}, // unknown: the client's order
		{[]string{"q", "x"}, []string{"q", "x"}},
	} {
		require.Equal(t, tc.want, OrderLayers(tc.in), "%v", tc.in)
	}
}

func TestSimulcastLayers(t *testing.T) {
	offer := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\n" +
		"a=rid:f send\r\na=rid:h send\r\na=rid:q send\r\na=simulcast:send f;h;~q\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sendonly\r\n" +
		"a=simulcast:send a.b;c,d;e;f;g;h recv z\r\n"
	var s sdp.SessionDescription
	require.NoError(t, s.UnmarshalString(offer))
	got := SimulcastLayers(&s)
	require.Equal(t, map[string][]string{"1": {"q", "h", "f"}, "2": {"c", "d", "e", "f"}}, got)
}

func TestCheckLayers(t *testing.T) {
	got, err := CheckLayers([]string{"f", "q", "h"})
	require.NoError(t, err)
	require.Equal(t, []string{"q", "h", "f"}, got)
	for _, bad := range [][]string{{"a", "b", "c", "d", "e"}, {"q", "q"}, {"a.b"}, {""}} {
		_, err := CheckLayers(bad)
		require.Error(t, err, "%v", bad)
	}
}

func TestOfferSimulcast(t *testing.T) {
	offer := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=simulcast:recv x;y\r\n"
	got := OfferSimulcast(offer, map[string][]string{"1": {"q", "h", "f"}, "2": {"q"}})
	require.Equal(t, "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n"+
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\na=recvonly\r\n"+
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=simulcast:recv x;y\r\n", got)
	var s sdp.SessionDescription
	require.NoError(t, s.UnmarshalString("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"+got[len("v=0\r\n"):]))
	require.Equal(t, offer, OfferSimulcast(offer, nil))
}

func TestTrackInfoLayers(t *testing.T) {
	require.Equal(t, []string{"0"}, TrackInfo{Track: "t"}.Published("p").Layers)
	layers := []string{"q", "h", "f"}
	ev := TrackInfo{Track: "t", Layers: layers}.Published("p")
	require.Equal(t, layers, ev.Layers)
	ev.Layers[0] = "x"
	require.Equal(t, "q", layers[0], "the event has its own copy")
}
