package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header names, as in the Standard Webhooks specification.
const (
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"
	// HeaderSeq carries the event's stream sequence in EVENTS (a jetmedia extension): within
	// a room it grows with the log order.
	HeaderSeq = "Jetmedia-Seq"
)

// ErrSignature is returned by Verify for a missing, malformed, wrong or stale signature.
var ErrSignature = errors.New("webhook: signature does not verify")

// Sign returns the Webhook-Signature value for one request: "v1," followed by the standard
// base64 of HMAC-SHA256(key, id + "." + timestamp + "." + body).
func Sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Verify checks a request's headers against its body as a receiver would: the signature
// header holds one or more space-separated "v1,<base64>" values, one must match, and the
// timestamp must be within tolerance of now (0: not checked).
func Verify(key []byte, id, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || id == "" {
		return ErrSignature
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
			return ErrSignature
		}
	}
	want := Sign(key, id, ts, body)
	for _, s := range strings.Fields(signature) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrSignature
}
