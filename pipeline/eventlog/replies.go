package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// replySubjects is how many reply subjects an inbox takes turns over: few, as each is an
// entry in the server's subject match cache while in use.
const replySubjects = 4

// errLogFailed ends a wait when the gate reports the log failed; the appender adds the gate's
// reason (Appender.unavailable).
var errLogFailed = errors.New("the log failed while the append waited")

// maxKeptBuffer bounds the encoding buffer an idle inbox keeps (an envelope is ~0.5 KiB; a
// rare large one is not held on to).
const maxKeptBuffer = 64 << 10

// maxIdleReplies bounds the reply inboxes an appender keeps between appends; more than this
// many appends at once each get an inbox of their own, dropped when the append ends.
const maxIdleReplies = 256

// replyInbox is one reusable reply inbox of the appender: a subscription that delivers
// straight into ch from the connection's read loop, and the message whose headers are
// rewritten for each publish. An append holds it for one publish at a time. It is given back
// only when no answer is outstanding, and dropped otherwise (a timeout, a cancelled caller),
// so no late answer can reach the next holder. Its publishes take turns over a few reply
// subjects and an answer on another subject than the current publish's is discarded: a
// second answer to one publish (which JetStream does not send, but two streams storing the
// same subject would) is not read as a later publish's unless it comes after the inbox's
// next replySubjects publishes were answered.
//
// Against nats.Conn.RequestMsgWithContext (measured in docs/benchmarks.md, "Append throughput,
// second pass") this saves, per event: the answer's hop through the connection's shared
// response subscription (its own goroutine, a map under the connection's lock, a channel per
// request), the reply subject and header map built for each publish, and a context with a
// timer for the default timeout.
type replyInbox struct {
	sub *nats.Subscription
	ch  chan *nats.Msg
	// closed is closed when the subscription ends (the connection closed, or dropInbox).
	closed chan struct{}
	msg    nats.Msg
	// replies are the inbox's reply subjects, used in turn; next is the next one's index.
	replies [replySubjects]string
	next    int
	// timer bounds a wait whose context has no deadline; stopped between waits.
	timer *time.Timer
	// buf is the inbox holder's encoding buffer (see appendExpect).
	buf []byte
	// pending: a publish was sent and its answer has not arrived.
	pending bool
}

// replies is the appender's pool of reply inboxes.
type replies struct {
	nc *nats.Conn
	mu sync.Mutex
	// idle inboxes, the last given back first; closed: Close was called.
	idle   []*replyInbox
	closed bool
	// n counts inboxes made (for their subjects).
	n      atomic.Uint64
	prefix string
}

func newReplies(nc *nats.Conn) *replies {
	return &replies{nc: nc, prefix: nc.NewInbox() + "."}
}

// take returns an idle inbox or subscribes a new one.
func (r *replies) take() (*replyInbox, error) {
	r.mu.Lock()
	if n := len(r.idle); n > 0 {
		in := r.idle[n-1]
		r.idle = r.idle[:n-1]
		r.mu.Unlock()
		return in, nil
	}
	r.mu.Unlock()
	// Room for stale answers beside the awaited one: a full channel drops what arrives.
	in := &replyInbox{ch: make(chan *nats.Msg, 2*replySubjects), closed: make(chan struct{})}
	subject := r.prefix + strconv.FormatUint(r.n.Add(1), 10)
	sub, err := r.nc.ChanSubscribe(subject+".*", in.ch)
	if err != nil {
		return nil, fmt.Errorf("publish: reply subscription: %w", err)
	}
	var once sync.Once
	// Called when the subscription ends, also when the connection closes under a waiter.
	sub.SetClosedHandler(func(string) { once.Do(func() { close(in.closed) }) })
	in.sub = sub
	for i := range in.replies {
		in.replies[i] = subject + "." + strconv.Itoa(i)
	}
	in.msg = nats.Msg{Header: nats.Header{
		jetstream.MsgIDHeader:                   {""},
		jetstream.ExpectedStreamHeader:          {StreamEvents},
		jetstream.ExpectedLastSubjSeqHeader:     {""},
		jetstream.ExpectedLastSubjSeqSubjHeader: {""},
	}}
	in.timer = time.NewTimer(time.Hour)
	in.timer.Stop()
	return in, nil
}

// give returns an inbox after use: to the idle ones if no answer is outstanding, else it is
// dropped.
func (r *replies) give(in *replyInbox) {
	if in.pending {
		r.drop(in)
		return
	}
	if cap(in.buf) > maxKeptBuffer {
		in.buf = nil
	}
	in.forget()
	r.mu.Lock()
	if !r.closed && len(r.idle) < maxIdleReplies {
		r.idle = append(r.idle, in)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.drop(in)
}

// forget lets go of what the last publish pointed at: an idle inbox holding its room subject,
// event id and sequence strings kept them, allocated among a session's short-lived objects,
// and their partly used spans in use on an idle node (issue 12's heap dumps).
func (in *replyInbox) forget() {
	in.msg.Subject, in.msg.Data = "", nil
	for _, k := range [...]string{jetstream.MsgIDHeader, jetstream.ExpectedLastSubjSeqHeader, jetstream.ExpectedLastSubjSeqSubjHeader} {
		in.msg.Header[k][0] = ""
	}
}

// drop ends an inbox that may still get an answer.
func (*replies) drop(in *replyInbox) {
	in.timer.Stop()
	_ = in.sub.Unsubscribe() // fails only on a closed connection, where it is gone anyway
}

// close drops the idle inboxes, and those in use as they are given back.
func (r *replies) close() {
	r.mu.Lock()
	idle := r.idle
	r.idle, r.closed = nil, true
	r.mu.Unlock()
	for _, in := range idle {
		r.drop(in)
	}
}

// request publishes in.msg (its subject, data and headers set by the caller) and waits for the
// answer: until ctx ends, failed (the gate; nil for none) is closed, the connection closes, or,
// when ctx has no deadline, timeout passes. Like jetstream.PublishMsg it sends again a publish
// nobody answered (a stream leader being elected) twice, 250 ms apart. The inbox may be given
// back (give) whatever request returned.
func (r *replies) request(ctx context.Context, in *replyInbox, timeout time.Duration, failed <-chan struct{}) (*nats.Msg, error) {
	var deadline <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		in.timer.Reset(timeout)
		defer in.timer.Stop()
		deadline = in.timer.C
	}
	for attempt := 0; ; attempt++ {
		in.msg.Reply = in.replies[in.next]
		in.next = (in.next + 1) % replySubjects
		// Queued or not, the connection may deliver an answer from here on.
		in.pending = true
		if err := r.nc.PublishMsg(&in.msg); err != nil {
			return nil, err
		}
		var resp *nats.Msg
		for resp == nil {
			select {
			case resp = <-in.ch:
				if resp.Subject != in.msg.Reply {
					resp = nil // an answer to an earlier publish: not this one's
				}
			case <-in.closed:
				return nil, nats.ErrConnectionClosed
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-failed:
				return nil, errLogFailed
			case <-deadline:
				return nil, nats.ErrTimeout
			}
		}
		in.pending = false
		if !noResponders(resp) {
			return resp, nil
		}
		if attempt == jetstream.DefaultPubRetryAttempts {
			return nil, jetstream.ErrNoStreamResponse
		}
		wait := time.NewTimer(jetstream.DefaultPubRetryWait)
		select {
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return nil, ctx.Err()
		}
	}
}

// noResponders reports whether m is the server's status answer for a subject nobody
// subscribes to (no stream took the publish).
func noResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}
