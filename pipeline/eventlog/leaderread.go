package eventlog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// NextRoomEvent reads the first stored event of room at or after stream sequence from, asking
// the EVENTS stream's leader; ok is false when the log holds none. Reads through a stream
// handle (GetMsg) are direct gets, which any replica answers, and a replica may be behind its
// leader by the events it has not applied yet; a reader that must not miss an event stored
// a moment ago (the rooms projection checking a room's state against the log) asks the leader,
// which answers only once it has applied everything it stored. During a leader election there
// is no one to answer: the error says so, and the caller asks again later.
func NextRoomEvent(ctx context.Context, js jetstream.JetStream, room string, from uint64) (StoredEvent, bool, error) {
	st, ok, err := getAtLeader(ctx, js, msgGetRequest{Seq: max(from, 1), NextBySubject: RoomEventsFilter(room)})
	if err != nil {
		return StoredEvent{}, false, fmt.Errorf("pipeline: read %s from %d at the leader: %w", RoomEventsFilter(room), from, err)
	}
	return st, ok, nil
}

// ReadAtLeader reads the stored event of stream sequence seq, asking the EVENTS stream's
// leader (see NextRoomEvent); ok is false when the log does not hold it (never stored under
// that sequence, or removed).
func ReadAtLeader(ctx context.Context, js jetstream.JetStream, seq uint64) (StoredEvent, bool, error) {
	st, ok, err := getAtLeader(ctx, js, msgGetRequest{Seq: seq})
	if err != nil {
		return StoredEvent{}, false, fmt.Errorf("pipeline: read %s sequence %d at the leader: %w", StreamEvents, seq, err)
	}
	return st, ok, nil
}

// getAtLeader sends one STREAM.MSG.GET request for EVENTS, which only the stream's leader
// answers.
func getAtLeader(ctx context.Context, js jetstream.JetStream, r msgGetRequest) (StoredEvent, bool, error) {
	req, err := json.Marshal(r)
	if err != nil {
		return StoredEvent{}, false, fmt.Errorf("encode message request: %w", err)
	}
	opts := js.Options()
	if _, ok := ctx.Deadline(); !ok {
		// As js's own requests: a leader that is not there (an election) must not hold the
		// caller for ever.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cmp.Or(opts.DefaultTimeout, defaultAPITimeout))
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, apiPrefix(opts)+"STREAM.MSG.GET."+StreamEvents, req)
	if err != nil {
		return StoredEvent{}, false, err
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return StoredEvent{}, false, fmt.Errorf("decode message response: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return StoredEvent{}, false, nil
		}
		return StoredEvent{}, false, resp.Error
	}
	if resp.Message == nil {
		return StoredEvent{}, false, errors.New("message response without a message")
	}
	m := resp.Message
	return StoredEvent{Seq: m.Seq, Subject: m.Subject, Data: m.Data}, true, nil
}

// defaultAPITimeout bounds a request to the JetStream API when neither the caller's context
// nor js says how long to wait (nats.go's own default).
const defaultAPITimeout = 5 * time.Second

// apiPrefix is the JetStream API prefix js sends its requests with.
func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		if !strings.HasSuffix(o.APIPrefix, ".") {
			return o.APIPrefix + "."
		}
		return o.APIPrefix
	}
	return jetstream.DefaultAPIPrefix
}

// msgGetRequest and msgGetResponse are the JetStream API's STREAM.MSG.GET request and
// response (the leader's read; nats.go's stream handle uses the direct get when the stream
// allows it).
type msgGetRequest struct {
	Seq           uint64 `json:"seq"`
	NextBySubject string `json:"next_by_subj,omitempty"`
}

type msgGetResponse struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Message *struct {
		Subject string `json:"subject"`
		Seq     uint64 `json:"seq"`
		Data    []byte `json:"data,omitempty"`
	} `json:"message,omitempty"`
}
