package rtc_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// offer is a minimal browser-like offer: one audio and one video m-line, sendonly video.
const offer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE 0 1\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:abcd\r\n" +
	"a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=sendrecv\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:abcd\r\n" +
	"a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:1\r\n" +
	"a=sendonly\r\n" +
	"a=rtpmap:96 VP8/90000\r\n"

func offerRequest(contentType, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/whip/room", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

func TestReadOffer(t *testing.T) {
	sessionUfrag := strings.Replace(strings.ReplaceAll(offer, "a=ice-ufrag:abcd\r\n", ""),
		"t=0 0\r\n", "t=0 0\r\na=ice-ufrag:abcd\r\n", 1)
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int // 0: accepted
	}{
		{"valid", "application/sdp", offer, 0},
		{"valid with parameters", "application/sdp; charset=utf-8", offer, 0},
		{"session-level ufrag", "application/sdp", sessionUfrag, 0},
		{"exactly the limit", "application/sdp", offer + pad(rtc.MaxSDPBytes-len(offer)), 0},
		{"no content type", "", offer, http.StatusUnsupportedMediaType},
		{"json", "application/json", offer, http.StatusUnsupportedMediaType},
		{"bad media type", "application/", offer, http.StatusUnsupportedMediaType},
		{"oversized", "application/sdp", offer + pad(rtc.MaxSDPBytes-len(offer)+1), http.StatusRequestEntityTooLarge},
		{"empty", "application/sdp", "", http.StatusBadRequest},
		{"malformed", "application/sdp", "hello world", http.StatusBadRequest},
		{"no media", "application/sdp", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", http.StatusBadRequest},
		{"no ice credentials", "application/sdp", strings.ReplaceAll(offer, "a=ice-ufrag:abcd\r\n", ""), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, parsed, err := rtc.ReadOffer(offerRequest(tt.contentType, tt.body))
			if tt.status == 0 {
				require.NoError(t, err)
				require.Equal(t, tt.body, body)
				require.Len(t, parsed.MediaDescriptions, 2)
				return
			}
			var he *rtc.HTTPError
			require.ErrorAs(t, err, &he)
			require.Equal(t, tt.status, he.Status, he.Msg)
			require.Nil(t, parsed)
			require.Empty(t, body)
		})
	}
}

// pad returns an SDP attribute line of n bytes (n >= 6), which keeps the offer parseable.
func pad(n int) string { return "a=x:" + strings.Repeat("y", n-6) + "\r\n" }

func TestKinds(t *testing.T) {
	_, parsed, err := rtc.ReadOffer(offerRequest("application/sdp", offer))
	require.NoError(t, err)
	require.Equal(t, map[string]int{"audio": 1, "video": 1}, rtc.SendKinds(parsed))
	require.Equal(t, map[string]int{"audio": 1}, rtc.RecvKinds(parsed))
}

func TestTrickleContentType(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		status                  int
	}{
		{"sdp instead of sdpfrag", "application/sdp", "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n", http.StatusUnsupportedMediaType},
		{"none", "", "", http.StatusUnsupportedMediaType},
		{"oversized", "application/trickle-ice-sdpfrag", pad(rtc.MaxSDPBytes + 1), http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPatch, "/whip/room/s", strings.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			// Rejected before the PeerConnection is touched, so none is needed.
			err := rtc.Trickle(r, nil)
			var he *rtc.HTTPError
			require.ErrorAs(t, err, &he)
			require.Equal(t, tt.status, he.Status)
		})
	}
}

func TestWriteError(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	r := httptest.NewRequest(http.MethodPost, "/whip/x", nil)

	w := httptest.NewRecorder()
	he := rtc.Errorf(http.StatusServiceUnavailable, "busy %d", 7)
	he.RetryAfter = 3
	rtc.WriteError(w, r, log, he)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "3", w.Header().Get("Retry-After"))
	require.Equal(t, "busy 7\n", w.Body.String())

	w = httptest.NewRecorder()
	rtc.WriteError(w, r, log, errors.New("secret database detail"))
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Empty(t, w.Header().Get("Retry-After"))
	require.Equal(t, "internal error\n", w.Body.String(), "server faults do not leak their text")
}

func TestWriteAnswer(t *testing.T) {
	w := httptest.NewRecorder()
	rtc.WriteAnswer(w, "/whip/r/s1", `"e1"`, "v=0\r\n")
	require.Equal(t, http.StatusCreated, w.Code)
	require.Equal(t, "application/sdp", w.Header().Get("Content-Type"))
	require.Equal(t, "/whip/r/s1", w.Header().Get("Location"))
	require.Equal(t, `"e1"`, w.Header().Get("ETag"))
	require.Contains(t, w.Header().Get("Access-Control-Expose-Headers"), "Location")
	require.Equal(t, "v=0\r\n", w.Body.String())
}

// FuzzReadOffer checks that any body and content type give either a parsed offer with media
// or an HTTPError with one of the statuses WHIP names, never a panic or another error.
func FuzzReadOffer(f *testing.F) {
	f.Add("application/sdp", []byte(offer))
	f.Add("application/sdp", []byte("v=0\r\n"))
	f.Add("text/plain", []byte(offer))
	f.Add("application/sdp", []byte("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 RTP/AVP 96\r\n"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/whip/r", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		s, parsed, err := rtc.ReadOffer(r)
		if err != nil {
			var he *rtc.HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("error is not an HTTPError: %v", err)
			}
			switch he.Status {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			default:
				t.Fatalf("unexpected status %d", he.Status)
			}
			return
		}
		if parsed == nil || len(parsed.MediaDescriptions) == 0 || s != string(body) {
			t.Fatalf("accepted offer without media or with a changed body")
		}
	})
}
