package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// ackWait is long on purpose: an event may wait in its room's lane behind another one being
// retried for minutes, and must not be redelivered meanwhile (that would reorder the room). A
// restart does not wait for it: Start resets the consumer to its ack floor, so every event not
// acknowledged before a crash is delivered again, in log order.
const ackWait = time.Hour

// Deliverer runs the delivery of the event log to every configured endpoint. Close stops it
// and waits for its goroutines; an event in flight then is delivered again after a restart.
type Deliverer struct {
	cfg    Config
	js     jetstream.JetStream
	log    *slog.Logger
	client *http.Client

	stats    map[string]*counters // by endpoint URL; fixed after Start
	breakers map[string]*breaker  // by endpoint URL; fixed after Start

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// counters of one endpoint.
type counters struct {
	delivered, failed, parked, queued atomic.Int64
}

// Stats are one endpoint's delivery counters since the node started.
type Stats struct {
	// URL is the endpoint's URL with any password masked (it becomes a metric label).
	URL string
	// Delivered events (accepted by the receiver), failed attempts, parked events, and events
	// taken from the log and not yet delivered or parked.
	Delivered, FailedAttempts, Parked, Queued int64
	// CircuitOpen: the endpoint's circuit breaker is open (or half-open, probing), so no lane
	// sends; CircuitOpens counts the times it opened.
	CircuitOpen  bool
	CircuitOpens int64
}

// Stats returns each endpoint's counters, in configuration order.
func (d *Deliverer) Stats() []Stats {
	out := make([]Stats, 0, len(d.cfg.Endpoints))
	for _, ep := range d.cfg.Endpoints {
		c := d.stats[ep.URL]
		open, opens := d.breakers[ep.URL].stats()
		out = append(out, Stats{URL: ep.redactedURL(), Delivered: c.delivered.Load(), FailedAttempts: c.failed.Load(),
			Parked: c.parked.Load(), Queued: c.queued.Load(), CircuitOpen: open, CircuitOpens: opens})
	}
	return out
}

// Start declares the parked stream and each endpoint's durable consumer and starts delivering.
// It does not own js's connection.
func Start(ctx context.Context, js jetstream.JetStream, cfg Config) (*Deliverer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Deliverer{cfg: cfg, js: js, log: log.With("component", "webhook"), client: cfg.Client,
		stats: map[string]*counters{}, breakers: map[string]*breaker{}}
	for _, ep := range cfg.Endpoints {
		d.stats[ep.URL] = &counters{}
		d.breakers[ep.URL] = newBreaker(newCircuit(cfg.Lanes, ep.Breaker, cfg.MaxAttempts, cfg.InitialBackoff, cfg.MaxBackoff, jitter),
			d.log.With("endpoint", ep.redactedURL()))
	}
	if d.client == nil {
		d.client = &http.Client{Timeout: cfg.Timeout}
	}
	if err := DeclareParked(ctx, js, cfg.Storage); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	for _, ep := range cfg.Endpoints {
		it, err := d.consume(ctx, ep)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.runEndpoint(runCtx, ep, it)
	}
	return d, nil
}

func (d *Deliverer) consume(ctx context.Context, ep Endpoint) (jetstream.MessagesContext, error) {
	c, err := d.js.CreateOrUpdateConsumer(ctx, eventlog.StreamEvents, jetstream.ConsumerConfig{
		Durable:     ep.Durable(),
		Description: "jetmedia webhook " + ep.URL,
		// Types are filtered here, not by subject, so that a changed filter keeps the
		// consumer and its checkpoint.
		FilterSubject: eventlog.EventsSubjects,
		// A new endpoint gets the events from its first start on, not the whole history.
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: d.cfg.MaxPending,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("webhook %s: consumer %s: %w", ep.URL, ep.Durable(), err)
	}
	// Events taken before a crash and never acknowledged would otherwise come back only after
	// ackWait, behind newer ones; rewinding to the ack floor redelivers them now, in order.
	// Some of the rewound events may have been delivered already (acks are not in log order
	// across rooms): duplicates, which Webhook-Id makes detectable.
	if info, err := c.Info(ctx); err == nil && info.NumAckPending > 0 {
		if _, err := d.js.ResetConsumer(ctx, eventlog.StreamEvents, ep.Durable()); err != nil {
			return nil, fmt.Errorf("webhook %s: rewind consumer %s: %w", ep.URL, ep.Durable(), err)
		}
	}
	it, err := c.Messages(jetstream.PullMaxMessages(min(d.cfg.MaxPending, 256)))
	if err != nil {
		return nil, fmt.Errorf("webhook %s: consume: %w", ep.URL, err)
	}
	return it, nil
}

// item is one event taken from the log and not yet acknowledged.
type item struct {
	msg  jetstream.Msg
	seq  uint64
	room string
	id   string
	typ  string
}

// lane delivers the events of the rooms hashed to it, one at a time.
type lane struct {
	index  int
	notify chan struct{}

	mu    sync.Mutex
	queue []item
	rooms map[string]*roomMark
	swept time.Time
}

// roomMark is what a lane remembers of a room to recognise redeliveries: JetStream sends an
// event again when its ack wait runs out while it waits in the lane, or when an ack was lost.
type roomMark struct {
	pushed  uint64    // highest sequence queued
	done    uint64    // sequence of the last event delivered or parked
	pending int       // events queued or in flight
	doneAt  time.Time // when done was set
}

// Forgetting a room: it has nothing pending and its last event finished longer ago than any
// redelivery of it can take to arrive (ackWait after its last delivery). Checked once a minute.
const (
	roomForgetAfter = ackWait + time.Minute
	sweepEvery      = time.Minute
)

// pushResult says what became of an event handed to a lane.
type pushResult uint8

const (
	pushQueued    pushResult = iota
	pushDuplicate            // a redelivery of an event still queued or in flight: dropped
	pushDone                 // a redelivery of an event delivered or parked: acknowledge it
)

func (l *lane) push(it item) pushResult {
	l.mu.Lock()
	r := l.rooms[it.room]
	if r == nil {
		r = &roomMark{}
		l.rooms[it.room] = r
	}
	switch {
	case it.seq <= r.done:
		l.mu.Unlock()
		return pushDone
	case it.seq <= r.pushed:
		// First deliveries come in log order, so this one was queued before and its
		// original is still ahead; that one is acknowledged when it is delivered.
		l.mu.Unlock()
		return pushDuplicate
	}
	r.pushed = it.seq
	r.pending++
	l.queue = append(l.queue, it)
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
	return pushQueued
}

func (l *lane) pop() (item, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		return item{}, false
	}
	it := l.queue[0]
	l.queue[0] = item{}
	l.queue = l.queue[1:]
	return it, true
}

// finish records that the room's event seq was delivered or parked, and forgets idle rooms.
func (l *lane) finish(room string, seq uint64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.rooms[room]; r != nil {
		r.done, r.doneAt = seq, now
		r.pending--
	}
	if now.Sub(l.swept) < sweepEvery {
		return
	}
	l.swept = now
	for name, r := range l.rooms {
		if r.pending == 0 && now.Sub(r.doneAt) > roomForgetAfter {
			delete(l.rooms, name)
		}
	}
}

func newLane(index int, now time.Time) *lane {
	return &lane{index: index, notify: make(chan struct{}, 1), rooms: map[string]*roomMark{}, swept: now}
}

func (d *Deliverer) runEndpoint(ctx context.Context, ep Endpoint, it jetstream.MessagesContext) {
	key, _ := ep.key() // validated
	log := d.log.With("endpoint", ep.redactedURL())
	c := d.stats[ep.URL]
	br := d.breakers[ep.URL]
	lanes := make([]*lane, d.cfg.Lanes)
	for i := range lanes {
		lanes[i] = newLane(i, time.Now())
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.runLane(ctx, ep, key, lanes[i], br, c, log)
		}()
	}
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		<-ctx.Done()
		it.Stop()
	}()
	go func() {
		defer d.wg.Done()
		for {
			msg, err := it.Next()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				log.Warn("pull failed; retrying", "err", err)
				select { // a consumer deleted under us fails every pull: do not spin
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			md, err := msg.Metadata()
			if err != nil {
				log.Error("event without metadata; skipping it", "subject", msg.Subject(), "err", err)
				_ = msg.Term()
				continue
			}
			var head struct {
				ID   string `json:"id"`
				Type string `json:"type"`
				Room string `json:"room"`
			}
			if err := json.Unmarshal(msg.Data(), &head); err != nil || head.ID == "" || head.Room == "" {
				// It cannot become deliverable by waiting; the log keeps it for inspection.
				log.Error("undecodable event; skipping it", "seq", md.Sequence.Stream, "err", err)
				_ = msg.Term()
				continue
			}
			if !ep.Wants(head.Type) {
				_ = msg.Ack()
				continue
			}
			c.queued.Add(1) // before the push: the lane may finish the event at once
			h := fnv.New32a()
			h.Write([]byte(head.Room))
			switch lanes[h.Sum32()%uint32(len(lanes))].push(item{msg: msg, seq: md.Sequence.Stream, room: head.Room, id: head.ID, typ: head.Type}) {
			case pushQueued:
			case pushDuplicate:
				c.queued.Add(-1)
			case pushDone:
				c.queued.Add(-1)
				_ = msg.Ack()
			}
		}
	}()
}

func (d *Deliverer) runLane(ctx context.Context, ep Endpoint, key []byte, l *lane, br *breaker, c *counters, log *slog.Logger) {
	for {
		it, ok := l.pop()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-l.notify:
				continue
			}
		}
		attempts, err := d.deliver(ctx, ep, key, l.index, br, c, it.id, it.seq, it.msg.Data())
		if ctx.Err() != nil {
			return // not acknowledged: delivered again after a restart
		}
		if err != nil {
			log.Warn("parking event after its last attempt", "room", it.room, "id", it.id, "seq", it.seq, "attempts", attempts, "err", err)
			if !d.park(ctx, ep, it, attempts, err, log) {
				return
			}
			c.parked.Add(1)
		} else {
			c.delivered.Add(1)
		}
		c.queued.Add(-1)
		if err := it.msg.Ack(); err != nil {
			log.Warn("ack failed; the event may be delivered again after a restart", "id", it.id, "err", err)
		}
		l.finish(it.room, it.seq, time.Now())
	}
}

// deliver sends one event through the endpoint's breaker until it is accepted, its attempts
// run out or ctx ends. attempts counts the failures held against the event (those while the
// circuit was open are not: the receiver was down, not refusing it); c.failed counts every
// failed request.
func (d *Deliverer) deliver(ctx context.Context, ep Endpoint, key []byte, laneIndex int, br *breaker, c *counters, id string, seq uint64, body []byte) (attempts int, err error) {
	for {
		probe, aerr := br.acquire(ctx, laneIndex)
		if aerr != nil {
			return attempts, aerr
		}
		if err = d.post(ctx, ep, key, id, seq, body); err == nil {
			br.record(probe, nil)
			return attempts + 1, nil
		}
		c.failed.Add(1)
		if ctx.Err() != nil {
			return attempts, err
		}
		if !br.record(probe, err) {
			continue // the circuit is open: acquire holds the lane until it closes
		}
		changed := br.changes()
		attempts++
		if attempts >= d.cfg.MaxAttempts {
			return attempts, err
		}
		// The backoff ends early when the circuit opens (acquire then holds the lane) or
		// closes again (the receiver is back: no reason to wait longer).
		if !sleep(ctx, d.wait(attempts, err), changed) {
			return attempts, ctx.Err()
		}
	}
}

// wait is the jittered backoff after the n-th failure, or the receiver's Retry-After if
// longer (up to MaxBackoff).
func (d *Deliverer) wait(n int, err error) time.Duration {
	wait := jitter(d.cfg.backoff(n))
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > wait {
		wait = min(se.RetryAfter, d.cfg.MaxBackoff)
	}
	return wait
}

// sleep waits d, or until wake is closed (nil: never); false if ctx ended.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

// attempt sends one event, without breaker, until it is accepted, the attempts run out or ctx
// ends (redrive: an operator's command).
func (d *Deliverer) attempt(ctx context.Context, ep Endpoint, key []byte, id string, seq uint64, body []byte) (int, error) {
	var err error
	for n := 1; ; n++ {
		if err = d.post(ctx, ep, key, id, seq, body); err == nil {
			return n, nil
		}
		if n >= d.cfg.MaxAttempts || ctx.Err() != nil {
			return n, err
		}
		if !sleep(ctx, d.wait(n, err), nil) {
			return n, ctx.Err()
		}
	}
}

// StatusError is a receiver's answer other than 2xx.
type StatusError struct {
	Code int
	// RetryAfter is the answer's Retry-After in seconds, if any.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string { return "receiver answered " + strconv.Itoa(e.Code) }

// post makes one request. Anything but a 2xx answer within the timeout is a failure.
func (d *Deliverer) post(ctx context.Context, ep Endpoint, key []byte, id string, seq uint64, body []byte) error {
	return post(ctx, d.client, d.cfg.Timeout, ep, key, id, seq, body)
}

func post(ctx context.Context, client *http.Client, timeout time.Duration, ep Endpoint, key []byte, id string, seq uint64, body []byte) error {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jetmedia-webhook/1")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSeq, strconv.FormatUint(seq, 10))
	if ep.Secret != "" {
		req.Header.Set(HeaderSignature, Sign(key, id, ts, body))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		se := &StatusError{Code: resp.StatusCode}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			se.RetryAfter = time.Duration(secs) * time.Second
		}
		return se
	}
	return nil
}

// park stores the event in WEBHOOKS_PARKED, retrying until it is stored or ctx ends (false):
// the event is acknowledged only once it is delivered or parked.
func (d *Deliverer) park(ctx context.Context, ep Endpoint, it item, attempts int, cause error, log *slog.Logger) bool {
	msg := parkedMsg(ep, it.room, it.id, it.typ, it.seq, attempts, cause, it.msg.Data())
	for wait := d.cfg.InitialBackoff; ; wait = min(2*wait, d.cfg.MaxBackoff) {
		_, err := d.js.PublishMsg(ctx, msg)
		if err == nil {
			return true
		}
		log.Error("cannot park event; retrying", "id", it.id, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// Close stops delivery and waits for it. Idempotent.
func (d *Deliverer) Close() {
	d.closeOnce.Do(func() {
		if d.cancel != nil {
			d.cancel()
		}
		d.wg.Wait()
	})
}
