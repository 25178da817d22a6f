package rtmp_test

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/ingress/rtmp"
)

func TestParseStreamURL(t *testing.T) {
	for _, tc := range []struct {
		url, room, token string
	}{
		{"rtmp://h:1935/live/room1?token=abc.def.ghi", "room1", "abc.def.ghi"},
		{"rtmp://h/live/room_2/abc.def.ghi", "room_2", "abc.def.ghi"},
		{"rtmp://h/live/room-3/abc?token=abc", "room-3", "abc"},
		{"rtmp://h/live/r/", "", ""},
		{"rtmp://h/live/r", "", ""},
		{"rtmp://h/live/?token=x", "", ""},
		{"rtmp://h/app/r?token=x", "", ""},
		{"rtmp://h/live/bad.room?token=x", "", ""},
		{"rtmp://h/live/r/a?token=b", "", ""},
		{"rtmp://h/live/r/a/b", "", ""},
		{"rtmp://h/live", "", ""},
	} {
		u, err := url.Parse(tc.url)
		require.NoError(t, err)
		room, token, err := rtmp.ParseStreamURL(u)
		if tc.room == "" {
			require.ErrorIs(t, err, rtmp.ErrStreamURL, tc.url)
			continue
		}
		require.NoError(t, err, tc.url)
		require.Equal(t, tc.room, room, tc.url)
		require.Equal(t, tc.token, token, tc.url)
	}
	_, _, err := rtmp.ParseStreamURL(nil)
	require.ErrorIs(t, err, rtmp.ErrStreamURL)
}
