package eventlog_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
)

// seen is what a handler records of one message.
type seen struct {
	id, subject string
	seq         uint64
}

type recorder struct {
	mu   sync.Mutex
	msgs []seen
	// fail, when set, makes the handler fail an event a number of times before it succeeds.
	fail map[string]int
}

func (r *recorder) handle(m *message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail[m.UUID] > 0 {
		r.fail[m.UUID]--
		return errors.New("transient")
	}
	seq, err := strconv.ParseUint(m.Metadata.Get(eventlog.MetaSeq), 10, 64)
	if err != nil {
		return err
	}
	r.msgs = append(r.msgs, seen{id: m.UUID, subject: m.Metadata.Get(eventlog.MetaSubject), seq: seq})
	return nil
}

func (r *recorder) get() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.msgs...)
}

// runRouter runs a router with one durable event consumer and returns a stop function that
// closes it and waits for Run to return.
func runRouter(t *testing.T, n node, durable string, h message.NoPublishHandlerFunc) (stop func()) {
	return runRouterCfg(t, n, eventlog.EventSubscriberConfig{Durable: durable, Filter: eventlog.EventsSubjects}, h)
}

func runRouterCfg(t *testing.T, n node, cfg eventlog.EventSubscriberConfig, h message.NoPublishHandlerFunc) (stop func()) {
	t.Helper()
	durable := cfg.Durable
	nc, err := n.srv.Connect("router-" + durable)
	require.NoError(t, err)
	sub, err := eventlog.NewEventSubscriber(nc, cfg)
	require.NoError(t, err)
	r, err := eventlog.NewRouter(nil)
	require.NoError(t, err)
	r.AddConsumerHandler(durable, eventlog.EventsSubjects, sub, h)
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case <-time.After(20 * time.Second):
		t.Fatal("router did not start")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			require.NoError(t, r.Close())
			require.NoError(t, <-done)
			// The subscriber does not own its connection.
			require.False(t, nc.IsClosed())
			nc.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

func appendN(t *testing.T, a *eventlog.Appender, room string, count int) []string {
	t.Helper()
	var out []string
	for i := range count {
		e := joined(t, room, "p"+strconv.Itoa(i))
		_, err := a.Append(t.Context(), e)
		require.NoError(t, err)
		out = append(out, e.ID)
	}
	return out
}

func waitFor(t *testing.T, rec *recorder, count int) []seen {
	t.Helper()
	require.Eventually(t, func() bool { return len(rec.get()) >= count }, 20*time.Second, 5*time.Millisecond)
	return rec.get()
}

func TestEventSubscriberValidates(t *testing.T) {
	n := start(t)
	nc, err := n.srv.Connect("x")
	require.NoError(t, err)
	defer nc.Close()
	_, err = eventlog.NewEventSubscriber(nc, eventlog.EventSubscriberConfig{Filter: eventlog.EventsSubjects})
	require.Error(t, err)
	_, err = eventlog.NewEventSubscriber(nc, eventlog.EventSubscriberConfig{Durable: "d"})
	require.Error(t, err)
}

// A handler sees every event once, in log order, with its id and sequence; a new subscriber
// with the same durable resumes after the last acknowledged event.
func TestRouterCheckpoint(t *testing.T) {
	n := start(t)
	ctx := t.Context()
	a := eventlog.NewAppender(n.js, "n1")
	want := append([]string{"room-created-r"}, appendN(t, a, "r", 4)...)
	want = append(want, "room-created-s")
	want = append(want, appendN(t, a, "s", 4)...)

	rec := &recorder{}
	stop := runRouter(t, n, "cp", rec.handle)
	want = append(want, appendN(t, a, "r", 3)...) // while it runs
	got := waitFor(t, rec, len(want))
	require.Equal(t, want, seenIDs(got))
	for i, s := range got {
		require.Equal(t, uint64(i+1), s.seq)
	}
	require.Equal(t, eventlog.EventSubject("r", "room_created"), got[0].subject)
	require.Equal(t, eventlog.EventSubject("s", "peer_joined"), got[6].subject)

	// Nothing is delivered twice: the consumer's ack floor is at the head, nothing pending.
	c, err := n.js.Consumer(ctx, eventlog.StreamEvents, "cp")
	require.NoError(t, err)
	info, err := c.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(len(want)), info.AckFloor.Stream)
	require.Zero(t, info.NumAckPending)
	require.Zero(t, info.NumPending)
	require.Zero(t, info.NumRedelivered)
	stop()
	require.Len(t, rec.get(), len(want), "no redelivery before close")

	// While no subscriber runs, events keep arriving; the next one resumes after the checkpoint.
	more := appendN(t, a, "s", 3)
	rec2 := &recorder{}
	runRouter(t, n, "cp", rec2.handle)
	got = waitFor(t, rec2, len(more))
	require.Equal(t, more, seenIDs(got))
	require.Equal(t, uint64(len(want)+1), got[0].seq)

	// Another durable starts from the beginning.
	rec3 := &recorder{}
	runRouter(t, n, "other", rec3.handle)
	require.Equal(t, append(want, more...), seenIDs(waitFor(t, rec3, len(want)+len(more))))
}

// A failing handler is retried in place: the event is handled before any later one.
func TestRouterRetriesInOrder(t *testing.T) {
	n := start(t)
	a := eventlog.NewAppender(n.js, "n1")
	want := append([]string{"room-created-r"}, appendN(t, a, "r", 5)...)
	rec := &recorder{fail: map[string]int{want[2]: 3}}
	runRouter(t, n, "retry", rec.handle)
	got := waitFor(t, rec, len(want))
	require.Equal(t, want, seenIDs(got))
	require.Zero(t, rec.fail[want[2]], "the failures happened")
}

// With many events in flight, an event that fails past the router's retries (nacked) is
// handed over again in place, before any later one, instead of being redelivered by JetStream
// after the events behind it; StartSeq starts a new consumer there.
func TestRouterNackInOrderWithManyInFlight(t *testing.T) {
	n := start(t)
	a := eventlog.NewAppender(n.js, "n1")
	want := append([]string{"room-created-r"}, appendN(t, a, "r", 40)...)
	rec := &recorder{fail: map[string]int{want[5]: 8}} // more than the 1+5 attempts of a round
	runRouterCfg(t, n, eventlog.EventSubscriberConfig{Durable: "many", Filter: eventlog.EventsSubjects, MaxAckPending: 64}, rec.handle)
	got := waitFor(t, rec, len(want))
	require.Equal(t, want, seenIDs(got))
	require.Zero(t, rec.fail[want[5]], "the failures happened")

	from := &recorder{}
	runRouterCfg(t, n, eventlog.EventSubscriberConfig{Durable: "from", Filter: eventlog.EventsSubjects, MaxAckPending: 64, StartSeq: got[30].seq}, from.handle)
	require.Equal(t, want[30:], seenIDs(waitFor(t, from, len(want)-30)))

	_, err := eventlog.NewEventSubscriber(nil, eventlog.EventSubscriberConfig{Durable: "x", Filter: "ev.>", MaxAckPending: -1})
	require.ErrorContains(t, err, "negative")
}

func seenIDs(s []seen) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.id
	}
	return out
}
