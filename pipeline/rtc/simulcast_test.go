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
