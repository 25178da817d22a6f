package netimpair

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
)

// Answers returns an HTTP transport (over base, http.DefaultTransport when nil) that points a
// WHIP/WHEP client at the relay: in every response body that is SDP, the candidates with the
// target's address get the relay's instead. The client then sends its media and ICE checks
// to the relay without either side knowing; nothing else in the client changes.
func (r *Relay) Answers(target *net.UDPAddr, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	from := []byte(" " + target.IP.String() + " " + strconv.Itoa(target.Port) + " typ ")
	to := []byte(" " + r.Addr().IP.String() + " " + strconv.Itoa(r.Addr().Port) + " typ ")
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(req)
		if err != nil || resp.Header.Get("Content-Type") != "application/sdp" {
			return resp, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("netimpair: read answer: %w", err)
		}
		body = bytes.ReplaceAll(body, from, to)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return resp, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
