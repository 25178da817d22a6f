package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// StreamParked holds the events that ran out of attempts, on parked.<endpoint id>.<room>
// (ParkedSubjects).
const (
	StreamParked   = "WEBHOOKS_PARKED"
	ParkedSubjects = "parked.>"
)

// Headers of a parked message; its payload is the event exactly as stored in EVENTS.
const (
	hdrEndpoint = "Webhook-Endpoint"
	hdrType     = "Webhook-Type"
	hdrAttempts = "Jetmedia-Attempts"
	hdrError    = "Jetmedia-Error"
)

// ParkedSubject is where an endpoint's parked events of a room are stored.
func ParkedSubject(endpointID, room string) string { return "parked." + endpointID + "." + room }

// DeclareParked creates or updates the parked stream, with sc's replicas and placement.
func DeclareParked(ctx context.Context, js jetstream.JetStream, sc eventlog.StorageConfig) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Replicas:    max(sc.Replicas, 1),
		Placement:   sc.Placement(),
		Name:        StreamParked,
		Description: "jetmedia webhook events that ran out of attempts, until redriven",
		Subjects:    []string{ParkedSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  2 * time.Minute,
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("webhook: declare stream %s: %w", StreamParked, err)
	}
	return nil
}

func parkedMsg(ep Endpoint, room, id, typ string, seq uint64, attempts int, cause error, body []byte) *nats.Msg {
	m := nats.NewMsg(ParkedSubject(ep.ID(), room))
	// A crash between parking and acknowledging parks the event again: dedupe it.
	m.Header.Set(jetstream.MsgIDHeader, ep.ID()+"-"+id)
	m.Header.Set(hdrEndpoint, ep.URL)
	m.Header.Set(HeaderID, id)
	m.Header.Set(hdrType, typ)
	m.Header.Set(HeaderSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(hdrAttempts, strconv.Itoa(attempts))
	if cause != nil {
		m.Header.Set(hdrError, cause.Error())
	}
	m.Data = body
	return m
}

// Parked is one parked event.
type Parked struct {
	// Seq is its sequence in WEBHOOKS_PARKED; EventSeq the event's in EVENTS.
	Seq        uint64    `json:"seq"`
	EndpointID string    `json:"endpoint_id"`
	URL        string    `json:"url"`
	Room       string    `json:"room"`
	EventID    string    `json:"event_id"`
	Type       string    `json:"type"`
	EventSeq   uint64    `json:"event_seq"`
	Attempts   int       `json:"attempts"`
	Error      string    `json:"error,omitempty"`
	ParkedAt   time.Time `json:"parked_at"`
	Body       []byte    `json:"-"`
}

// ListParked calls fn for every parked event, oldest first; endpointID "" means every
// endpoint.
func ListParked(ctx context.Context, js jetstream.JetStream, endpointID string, fn func(Parked) error) error {
	stream, err := js.Stream(ctx, StreamParked)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("webhook: stream %s: %w", StreamParked, err)
	}
	filter := ParkedSubjects
	if endpointID != "" {
		filter = "parked." + endpointID + ".>"
	}
	for seq := uint64(1); ; {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("webhook: read parked events: %w", err)
		}
		seq = m.Sequence + 1
		if err := fn(toParked(m)); err != nil {
			return err
		}
	}
}

func toParked(m *jetstream.RawStreamMsg) Parked {
	p := Parked{Seq: m.Sequence, ParkedAt: m.Time, Body: m.Data}
	// parked.<endpoint>.<room>
	if rest, ok := cutPrefix(m.Subject, "parked."); ok {
		for i := 0; i < len(rest); i++ {
			if rest[i] == '.' {
				p.EndpointID, p.Room = rest[:i], rest[i+1:]
				break
			}
		}
	}
	p.URL = m.Header.Get(hdrEndpoint)
	p.EventID = m.Header.Get(HeaderID)
	p.Type = m.Header.Get(hdrType)
	p.EventSeq, _ = strconv.ParseUint(m.Header.Get(HeaderSeq), 10, 64)
	p.Attempts, _ = strconv.Atoi(m.Header.Get(hdrAttempts))
	p.Error = m.Header.Get(hdrError)
	return p
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// RedriveResult counts what a redrive did.
type RedriveResult struct {
	// Delivered events were accepted by their endpoint and removed from the parked stream.
	Delivered int `json:"delivered"`
	// Failed events were tried and refused again; Held ones were not tried because an
	// earlier event of their room failed (their room's order is kept). Both stay parked.
	Failed int `json:"failed"`
	Held   int `json:"held"`
	// Unconfigured lists the endpoints with parked events that cfg does not configure (the
	// redrive needs each endpoint's secret); their events stay parked.
	Unconfigured []string `json:"unconfigured,omitempty"`
}

// Redrive sends the parked events of the configured endpoints again, oldest first, each with
// up to cfg.MaxAttempts attempts and cfg's backoff, and removes each one that is accepted.
// Within a room it stops at the first event that fails, so a room's redriven events arrive in
// log order. only, if not empty, limits it to the endpoint with that URL or id.
func Redrive(ctx context.Context, js jetstream.JetStream, cfg Config, only string) (RedriveResult, error) {
	var res RedriveResult
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	d := &Deliverer{cfg: cfg, js: js, client: cfg.Client}
	if d.client == nil {
		d.client = &http.Client{Timeout: cfg.Timeout}
	}
	byID := map[string]Endpoint{}
	for _, ep := range cfg.Endpoints {
		byID[ep.ID()] = ep
	}
	stream, err := js.Stream(ctx, StreamParked)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("webhook: stream %s: %w", StreamParked, err)
	}
	var parked []Parked
	if err := ListParked(ctx, js, "", func(p Parked) error {
		if only == "" || only == p.URL || only == p.EndpointID {
			parked = append(parked, p)
		}
		return nil
	}); err != nil {
		return res, err
	}
	held := map[string]bool{} // endpoint id + room
	unconf := map[string]bool{}
	for _, p := range parked {
		ep, ok := byID[p.EndpointID]
		if !ok {
			if !unconf[p.EndpointID] {
				unconf[p.EndpointID] = true
				res.Unconfigured = append(res.Unconfigured, p.EndpointID+" ("+p.URL+")")
			}
			continue
		}
		lane := p.EndpointID + "." + p.Room
		if held[lane] {
			res.Held++
			continue
		}
		key, _ := ep.key()
		if _, err := d.attempt(ctx, ep, key, p.EventID, p.EventSeq, p.Body); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			held[lane] = true
			res.Failed++
			continue
		}
		if err := stream.DeleteMsg(ctx, p.Seq); err != nil {
			return res, fmt.Errorf("webhook: remove redriven event %s: %w", p.EventID, err)
		}
		res.Delivered++
	}
	return res, nil
}
