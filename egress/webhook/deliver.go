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
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline"
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

	stats map[string]*counters // by endpoint URL; fixed after Start

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
	URL string
	// Delivered events (accepted by the receiver), failed attempts, parked events, and events
	// taken from the log and not yet delivered or parked.
	Delivered, FailedAttempts, Parked, Queued int64
}

// Stats returns each endpoint's counters, in configuration order.
func (d *Deliverer) Stats() []Stats {
	out := make([]Stats, 0, len(d.cfg.Endpoints))
	for _, ep := range d.cfg.Endpoints {
		c := d.stats[ep.URL]
		out = append(out, Stats{URL: ep.URL, Delivered: c.delivered.Load(), FailedAttempts: c.failed.Load(),
			Parked: c.parked.Load(), Queued: c.queued.Load()})
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
	d := &Deliverer{cfg: cfg, js: js, log: log.With("component", "webhook"), client: cfg.Client, stats: map[string]*counters{}}
	for _, ep := range cfg.Endpoints {
		d.stats[ep.URL] = &counters{}
	}
	if d.client == nil {
		d.client = &http.Client{Timeout: cfg.Timeout}
	}
	if err := DeclareParked(ctx, js); err != nil {
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
	c, err := d.js.CreateOrUpdateConsumer(ctx, pipeline.StreamEvents, jetstream.ConsumerConfig{
		Durable:     ep.Durable(),
		Description: "jetmedia webhook " + ep.URL,
		// Types are filtered here, not by subject, so that a changed filter keeps the
		// consumer and its checkpoint.
		FilterSubject: pipeline.EventsSubjects,
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
		if _, err := d.js.ResetConsumer(ctx, pipeline.StreamEvents, ep.Durable()); err != nil {
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
	mu     sync.Mutex
	queue  []item
	notify chan struct{}
	// done is the stream sequence of each room's last delivered or parked event: an event at
	// or below it is a redelivery and is acknowledged without being sent again.
	done map[string]uint64
}

func (l *lane) push(it item) {
	l.mu.Lock()
	l.queue = append(l.queue, it)
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
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

func (d *Deliverer) runEndpoint(ctx context.Context, ep Endpoint, it jetstream.MessagesContext) {
	key, _ := ep.key() // validated
	log := d.log.With("endpoint", ep.URL)
	c := d.stats[ep.URL]
	lanes := make([]*lane, d.cfg.Lanes)
	for i := range lanes {
		lanes[i] = &lane{notify: make(chan struct{}, 1), done: map[string]uint64{}}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.runLane(ctx, ep, key, lanes[i], c, log)
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
			c.queued.Add(1)
			h := fnv.New32a()
			h.Write([]byte(head.Room))
			lanes[h.Sum32()%uint32(len(lanes))].push(item{msg: msg, seq: md.Sequence.Stream, room: head.Room, id: head.ID, typ: head.Type})
		}
	}()
}

func (d *Deliverer) runLane(ctx context.Context, ep Endpoint, key []byte, l *lane, c *counters, log *slog.Logger) {
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
		if it.seq <= l.done[it.room] {
			_ = it.msg.Ack()
			c.queued.Add(-1)
			continue
		}
		attempts, err := d.attempt(ctx, ep, key, it.id, it.seq, it.msg.Data())
		if err == nil {
			c.failed.Add(int64(attempts - 1))
		} else {
			c.failed.Add(int64(attempts))
		}
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
		l.done[it.room] = it.seq
	}
}

// attempt sends one event until it is accepted, the attempts run out or ctx ends.
func (d *Deliverer) attempt(ctx context.Context, ep Endpoint, key []byte, id string, seq uint64, body []byte) (int, error) {
	var err error
	for n := 1; ; n++ {
		if err = d.post(ctx, ep, key, id, seq, body); err == nil {
			return n, nil
		}
		if n >= d.cfg.MaxAttempts || ctx.Err() != nil {
			return n, err
		}
		wait := d.cfg.backoff(n)
		wait = wait/2 + rand.N(wait/2+1)
		// A receiver that says when to come back (429, 503) is heeded, up to MaxBackoff.
		var se *StatusError
		if errors.As(err, &se) && se.RetryAfter > wait {
			wait = min(se.RetryAfter, d.cfg.MaxBackoff)
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(wait):
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
