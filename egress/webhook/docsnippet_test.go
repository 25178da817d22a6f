package webhook_test

// The verification code of docs/webhooks.md, copied verbatim below the marker, checked against
// the deliverer's signing.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/egress/webhook"
)

func TestDocsVerifySnippet(t *testing.T) {
	body := []byte(`{"id":"abc","type":"peer.joined.v1"}`)
	ts := time.Now().Unix()
	req := func(sig string, ts int64) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.Header.Set("Webhook-Id", "abc")
		r.Header.Set("Webhook-Timestamp", strconv.FormatInt(ts, 10))
		r.Header.Set("Webhook-Signature", sig)
		return r
	}
	got, ok := verified(key, req(webhook.Sign(key, "abc", ts, body), ts))
	require.True(t, ok)
	require.Equal(t, body, got)
	_, ok = verified(key, req(webhook.Sign([]byte("other"), "abc", ts, body), ts))
	require.False(t, ok)
	old := ts - 3600
	_, ok = verified(key, req(webhook.Sign(key, "abc", old, body), old))
	require.False(t, ok)
}

// --- docs/webhooks.md ---

// key: for a secret "whsec_XXXX" the base64-decoded XXXX; for any other secret its bytes.
func verified(key []byte, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, false
	}
	id := r.Header.Get("Webhook-Id")
	ts := r.Header.Get("Webhook-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" {
		return nil, false
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return nil, false // too old or from the future: a replay
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(r.Header.Get("Webhook-Signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return body, true
		}
	}
	return nil, false
}
