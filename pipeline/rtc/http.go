package rtc

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"

	"github.com/jetmedia/jetmedia/events"

	"github.com/pion/sdp/v3"
)

// MaxSDPBytes bounds an offer body. Real offers are a few KiB; simulcast with many
// codecs stays under 32 KiB.
const MaxSDPBytes = 64 << 10

// HTTPError is an error with the HTTP status it maps to.
type HTTPError struct {
	Status int
	Msg    string
	// RetryAfter, in seconds, is sent as Retry-After when non-zero.
	RetryAfter int
	// Challenge is sent as WWW-Authenticate when set (401 and 403 of bearer-token checks).
	Challenge string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Msg) }

// Errorf builds an HTTPError.
func Errorf(status int, format string, args ...any) *HTTPError {
	return &HTTPError{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// WriteError replies with err's status (500 for errors that carry none) and a plain-text
// message, and logs it: client mistakes at Info, server faults at Error.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var he *HTTPError
	if !errors.As(err, &he) {
		he = &HTTPError{Status: http.StatusInternalServerError, Msg: "internal error"}
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		log.Info("request rejected", "method", r.Method, "path", r.URL.Path, "status", he.Status, "reason", he.Msg)
	}
	if he.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(he.RetryAfter))
	}
	if he.Challenge != "" {
		w.Header().Set("WWW-Authenticate", he.Challenge)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(he.Status)
	_, _ = io.WriteString(w, he.Msg+"\n")
}

// ReadOffer reads and checks an application/sdp offer body: 415 for another content type, 413
// when larger than MaxSDPBytes, 400 when it is not a parseable SDP offer with media.
func ReadOffer(r *http.Request) (string, *sdp.SessionDescription, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/sdp" {
		return "", nil, Errorf(http.StatusUnsupportedMediaType, "content type must be application/sdp, got %q", r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxSDPBytes+1))
	if err != nil {
		return "", nil, Errorf(http.StatusBadRequest, "reading body: %v", err)
	}
	if len(body) > MaxSDPBytes {
		return "", nil, Errorf(http.StatusRequestEntityTooLarge, "SDP offer larger than %d bytes", MaxSDPBytes)
	}
	if len(body) == 0 {
		return "", nil, Errorf(http.StatusBadRequest, "malformed SDP offer: the body is empty")
	}
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(string(body)); err != nil {
		return "", nil, Errorf(http.StatusBadRequest, "malformed SDP offer: %v", err)
	}
	if len(parsed.MediaDescriptions) == 0 {
		return "", nil, Errorf(http.StatusBadRequest, "SDP offer has no media sections")
	}
	for _, m := range parsed.MediaDescriptions {
		if _, ok := m.Attribute("ice-ufrag"); !ok {
			if _, ok := parsed.Attribute("ice-ufrag"); !ok {
				return "", nil, Errorf(http.StatusBadRequest, "SDP offer has no ICE credentials (a=ice-ufrag)")
			}
		}
	}
	return string(body), &parsed, nil
}

// direction is an m-line's direction attribute (sendrecv when absent).
func direction(m *sdp.MediaDescription) string {
	for _, a := range m.Attributes {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return "sendrecv"
}

// SendKinds counts the offer's audio and video m-lines on which the offerer sends.
func SendKinds(s *sdp.SessionDescription) map[string]int {
	return kinds(s, "sendrecv", "sendonly")
}

// RecvKinds counts the offer's audio and video m-lines on which the offerer receives.
func RecvKinds(s *sdp.SessionDescription) map[string]int {
	return kinds(s, "sendrecv", "recvonly")
}

func kinds(s *sdp.SessionDescription, dirs ...string) map[string]int {
	out := map[string]int{}
	for _, m := range s.MediaDescriptions {
		kind := m.MediaName.Media
		if (kind == "audio" || kind == "video") && slices.Contains(dirs, direction(m)) {
			out[kind]++
		}
	}
	return out
}

// WriteAnswer sends the 201 reply of a WHIP or WHEP POST.
func WriteAnswer(w http.ResponseWriter, location, etag, answer string) {
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", location)
	h.Set("ETag", etag)
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Link")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// RoomFromPath is the request's {room} path value; a value that is not a valid id is answered
// with 400 here, and ok is false.
func RoomFromPath(w http.ResponseWriter, r *http.Request, log *slog.Logger) (room string, ok bool) {
	room = r.PathValue("room")
	if !events.ValidID(room) {
		WriteError(w, r, log, Errorf(http.StatusBadRequest, "room %q is not a valid id", room))
		return room, false
	}
	return room, true
}
