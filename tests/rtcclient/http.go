package rtcclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

// HTTPError is a reply of the server other than the one expected.
type HTTPError struct {
	Status     int
	Body       string
	RetryAfter string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, strings.TrimSpace(e.Body))
}

// ErrNotPublished is a WHEP endpoint's 409 (the room publishes nothing yet) still answered
// when the caller gave up waiting.
var ErrNotPublished = errors.New("rtcclient: the room publishes nothing yet")

// IsNotPublished reports whether err is a WHEP endpoint's 409: nothing published yet.
func IsNotPublished(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == http.StatusConflict
}

// UntilPublished calls start until it returns anything but a 409 (IsNotPublished), every
// 100 ms; when ctx ends first the error wraps ErrNotPublished and the last 409.
func UntilPublished[T any](ctx context.Context, start func() (T, error)) (T, error) {
	var last error // the last 409
	for {
		v, err := start()
		if last != nil && err != nil && ctx.Err() != nil {
			// ctx ended during a try after a 409: the room still publishes nothing.
			return v, fmt.Errorf("%w (still 409 when giving up): %w", ErrNotPublished, last)
		}
		if !IsNotPublished(err) {
			return v, err
		}
		last = err
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			var zero T
			return zero, fmt.Errorf("%w (still 409 when giving up): %w", ErrNotPublished, err)
		case <-t.C:
		}
	}
}

// SetToken sets token, if any, as req's bearer token.
func SetToken(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

// PostOffer posts an SDP offer to a WHIP or WHEP endpoint and returns the answer and the
// session URL; a reply other than 201 is an *HTTPError.
func PostOffer(ctx context.Context, hc *http.Client, endpoint, token, offer string) (answer, location string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return "", "", fmt.Errorf("rtcclient: %w", err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	SetToken(req, token)
	// A node may send the offer to another (307, placement). Go's client drops the
	// Authorization header on a redirect to another host; a WHIP client presents its token
	// to the node it is sent to.
	follow := *hc
	follow.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("rtcclient: more than 5 redirects")
		}
		SetToken(r, token)
		return nil
	}
	resp, err := follow.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("rtcclient: post offer: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return "", "", &HTTPError{Status: resp.StatusCode, Body: string(body), RetryAfter: resp.Header.Get("Retry-After")}
	}
	base := resp.Request.URL // the session's URL is relative to the node that answered
	loc := resp.Header.Get("Location")
	rel, err := url.Parse(loc)
	if err != nil || loc == "" {
		return "", "", fmt.Errorf("rtcclient: no usable Location header: %q", loc)
	}
	return string(body), base.ResolveReference(rel).String(), nil
}

// Exchange posts pc's offer to endpoint once ICE gathering is complete (no trickle), applies
// the answer and returns the session URL.
func Exchange(ctx context.Context, hc *http.Client, pc *webrtc.PeerConnection, endpoint, token string) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("rtcclient: offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", fmt.Errorf("rtcclient: offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("rtcclient: ICE gathering: %w", ctx.Err())
	}
	answer, location, err := PostOffer(ctx, hc, endpoint, token, pc.LocalDescription().SDP)
	if err != nil {
		return "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return "", fmt.Errorf("rtcclient: answer: %w", err)
	}
	return location, nil
}

// Delete ends a WHIP or WHEP session (DELETE on its URL); a reply other than 200 is an
// *HTTPError.
func Delete(ctx context.Context, hc *http.Client, location, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, location, nil)
	if err != nil {
		return fmt.Errorf("rtcclient: %w", err)
	}
	SetToken(req, token)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("rtcclient: delete session: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return &HTTPError{Status: resp.StatusCode, Body: string(body)}
	}
	return nil
}
