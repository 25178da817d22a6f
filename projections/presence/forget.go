package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections"
)

// BucketForgotten is the region's KV bucket of forgotten edges, one key per edge's JetStream
// domain, kept until deleted (`jetmedia cluster unforget`). An edge reads its key before it
// adds its log to the region's sources, and stays out while the key exists.
const BucketForgotten = "forgotten_edges"

var (
	// ErrNotEdge: the region's log sources no edge of that domain, and none was forgotten.
	ErrNotEdge = errors.New("presence: not an edge of this region")
	// ErrEdgeLive: the edge's lease, read in its own domain, still holds.
	ErrEdgeLive = errors.New("presence: the edge's lease is live")
	// ErrBadName: a node name or domain no subject token or key can hold.
	ErrBadName = errors.New("presence: bad edge name")
)

// namePattern bounds node names and domains to what a subject token and a KV key can hold.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// edgeReadTimeout bounds the read of an edge's lease in its domain: a dead edge's domain
// answers "no responders" at once, a link that drops requests costs this much.
const edgeReadTimeout = 3 * time.Second

// edgeDomainPrefix starts an edge's default JetStream domain, "edge-<node>" (the default of
// --js-domain).
const edgeDomainPrefix = "edge-"

// DefaultEdgeDomain is the JetStream domain of edge node unless it was given another one.
func DefaultEdgeDomain(node string) string { return edgeDomainPrefix + node }

// EdgeNodeOf is the node name a default edge domain ("edge-<node>") carries, "" for a domain
// of another form: its edge was given a --js-domain that does not name it.
func EdgeNodeOf(domain string) string {
	node, ok := strings.CutPrefix(domain, edgeDomainPrefix)
	if !ok || !namePattern.MatchString(node) {
		return ""
	}
	return node
}

// Forgotten is the record of an edge the region forgot.
type Forgotten struct {
	Node   string    `json:"node"`
	Domain string    `json:"domain"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// ForgetRequest asks to forget an edge.
type ForgetRequest struct {
	// Node is the edge's node name; Domain its JetStream domain ("edge-<node>" when empty,
	// the default of --js-domain).
	Node, Domain string
	// By says who decided (an operator's identity), Writer names the events' writer (their
	// envelope's node: the node serving the request, or the command line tool).
	By, Writer string
	// Settle bounds the wait for the rooms bucket to show the ends (0: 10 s).
	Settle time.Duration
}

// ForgetResult says what Forget did.
type ForgetResult struct {
	Forgotten
	// Already: the edge had been forgotten before (Forgotten is that record).
	Already bool `json:"already"`
	// Lease says what the edge's lease read in its domain showed (or why it could not be read).
	Lease string `json:"lease"`
	// SourceRemoved: this call removed the edge's stream from the region's sources.
	SourceRemoved bool `json:"source_removed"`
	// Ended is the number of the edge's sessions this call ended, in Rooms rooms; Remaining
	// the sessions the rooms bucket still showed on the edge when the wait ended.
	Ended     int `json:"ended"`
	Rooms     int `json:"rooms"`
	Remaining int `json:"remaining"`
}

// Noop reports whether the call changed nothing: a repeated forget.
func (r ForgetResult) Noop() bool { return r.Already && !r.SourceRemoved && r.Ended == 0 }

// Forget makes the region forget a dead edge, in this order: it refuses when the edge's lease
// still holds in its domain (where that can be read) or when the region knows no edge of that
// domain; it records the edge as forgotten (so the edge stops re-adding its source), removes
// the edge's stream from the region's EVENTS sources, and ends the edge's sessions the region's
// rooms bucket still shows, in the region's log, with the events and ids of a lease lapse.
// Each step is idempotent: a retry or a racing second call writes nothing twice.
func Forget(ctx context.Context, region jetstream.JetStream, req ForgetRequest) (ForgetResult, error) {
	if req.Domain == "" {
		req.Domain = DefaultEdgeDomain(req.Node)
	}
	if !namePattern.MatchString(req.Node) || !namePattern.MatchString(req.Domain) {
		return ForgetResult{}, fmt.Errorf("%w: edge %q of domain %q: names are 1-64 letters, digits, - or _", ErrBadName, req.Node, req.Domain)
	}
	res := ForgetResult{Forgotten: Forgotten{Node: req.Node, Domain: req.Domain, By: req.By, At: time.Now().UTC()}}
	rec, found, err := EdgeForgotten(ctx, region, req.Domain)
	if err != nil {
		return res, err
	}
	if found {
		res.Forgotten, res.Already, res.Lease = rec, true, "not read (forgotten before)"
	} else if err := knownEdge(ctx, region, req.Domain); err != nil {
		return res, err
	} else if res.Lease, err = edgeLease(ctx, region.Conn(), req.Node, req.Domain); err != nil {
		return res, err
	}
	if !found {
		if res.Forgotten, res.Already, err = record(ctx, region, res.Forgotten); err != nil {
			return res, err
		}
	}
	if res.SourceRemoved, err = eventlog.RemoveEdgeSource(ctx, region, req.Domain); err != nil {
		return res, err
	}
	if err := endEdgeSessions(ctx, region, req, &res); err != nil {
		return res, err
	}
	return res, nil
}

// knownEdge: the region's log sources the edge's.
func knownEdge(ctx context.Context, region jetstream.JetStream, domain string) error {
	sources, err := eventlog.EdgeSources(ctx, region)
	if err != nil {
		return err
	}
	for _, d := range sources {
		if d == domain {
			return nil
		}
	}
	return fmt.Errorf("%w: the region's log sources no edge of domain %s (it sources %v; give the edge's --js-domain)", ErrNotEdge, domain, sources)
}

// edgeLease reads the edge's lease in its own domain. A live lease is ErrEdgeLive; a lease
// that cannot be read (the domain does not answer: the edge is dead or cut off) is no
// refusal, since telling the two apart is what the operator decided.
func edgeLease(ctx context.Context, nc *nats.Conn, node, domain string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, edgeReadTimeout)
	defer cancel()
	edge, err := jetstream.NewWithDomain(nc, domain)
	if err != nil {
		return "", fmt.Errorf("presence: domain %s: %w", domain, err)
	}
	kv, err := edge.KeyValue(ctx, BucketNodes)
	if err != nil {
		return fmt.Sprintf("unreadable in domain %s (%v): the edge is down or cut off", domain, err), nil
	}
	e, err := kv.Get(ctx, node)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// The domain answers but holds no lease of that name: the edge stopped cleanly, or
		// the name is not the one its node runs under (a --js-domain that does not name it).
		// A live lease of any node there is a running edge all the same.
		if other, age, ttl, live := liveLeaseIn(ctx, kv); live {
			return "", fmt.Errorf("%w: domain %s holds no lease of %s, but node %s renewed its lease there %s ago (TTL %v): the edge is running (under that name?); stop it first",
				ErrEdgeLive, domain, node, other, age.Round(time.Millisecond), ttl)
		}
		return fmt.Sprintf("none in domain %s (the edge stopped cleanly or never ran)", domain), nil
	}
	if err != nil {
		return fmt.Sprintf("unreadable in domain %s (%v): the edge is down or cut off", domain, err), nil
	}
	l, age, ok := leaseOf(e)
	if !ok {
		return fmt.Sprintf("unreadable in domain %s (not a lease)", domain), nil
	}
	if age <= l.TTL {
		return "", fmt.Errorf("%w: edge %s renewed its lease in domain %s %s ago (TTL %v): it is running; stop it first",
			ErrEdgeLive, node, domain, age.Round(time.Millisecond), l.TTL)
	}
	return fmt.Sprintf("expired in domain %s (renewed %s ago, TTL %v): the edge's JetStream answers but its node does not renew",
		domain, age.Round(time.Second), l.TTL), nil
}

// leaseOf is the lease an entry of a nodes bucket holds and its age, from when the bucket
// stored it (as `jetmedia cluster` ages leases); false when it holds none.
func leaseOf(e jetstream.KeyValueEntry) (Lease, time.Duration, bool) {
	var l Lease
	if e == nil || e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &l) != nil {
		return Lease{}, 0, false
	}
	return l, time.Since(e.Created()), true
}

// liveLeaseIn finds a lease in an edge's nodes bucket renewed within its TTL: its node, age
// and TTL. A bucket that cannot be listed within ctx has none found (as an unreadable lease).
func liveLeaseIn(ctx context.Context, kv jetstream.KeyValue) (string, time.Duration, time.Duration, bool) {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return "", 0, 0, false
	}
	defer func() { _ = keys.Stop() }()
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		if l, age, ok := leaseOf(e); ok && age <= l.TTL {
			return k, age, l.TTL, true
		}
	}
	return "", 0, 0, false
}

// forgottenBucket opens (create: declares) the region's bucket of forgotten edges, with the
// replicas of the region's nodes bucket.
func forgottenBucket(ctx context.Context, region jetstream.JetStream, create bool) (jetstream.KeyValue, error) {
	kv, err := region.KeyValue(ctx, BucketForgotten)
	if err == nil || !create || !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	replicas := 1
	var placement *jetstream.Placement
	if s, err := region.Stream(ctx, "KV_"+BucketNodes); err == nil {
		replicas = max(s.CachedInfo().Config.Replicas, 1)
		placement = s.CachedInfo().Config.Placement
	}
	return region.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketForgotten,
		Description: "jetmedia edges the region forgot (jetmedia cluster forget): they do not source their log into the region's",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Placement:   placement,
	})
}

// record stores f unless the edge was recorded meanwhile; it returns the stored record and
// whether it was there before.
func record(ctx context.Context, region jetstream.JetStream, f Forgotten) (Forgotten, bool, error) {
	kv, err := forgottenBucket(ctx, region, true)
	if err != nil {
		return f, false, fmt.Errorf("presence: bucket %s: %w", BucketForgotten, err)
	}
	b, err := json.Marshal(f)
	if err != nil {
		return f, false, err
	}
	if _, err := kv.Create(ctx, f.Domain, b); err == nil {
		return f, false, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return f, false, fmt.Errorf("presence: record edge %s as forgotten: %w", f.Node, err)
	}
	rec, _, err := EdgeForgotten(ctx, region, f.Domain)
	return rec, true, err
}

// EdgeForgotten reads the region's record of the edge of domain, if it was forgotten.
func EdgeForgotten(ctx context.Context, region jetstream.JetStream, domain string) (Forgotten, bool, error) {
	kv, err := forgottenBucket(ctx, region, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return Forgotten{}, false, nil
	}
	if err != nil {
		return Forgotten{}, false, fmt.Errorf("presence: bucket %s: %w", BucketForgotten, err)
	}
	e, err := kv.Get(ctx, domain)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Forgotten{}, false, nil
	}
	if err != nil {
		return Forgotten{}, false, fmt.Errorf("presence: forgotten edge %s: %w", domain, err)
	}
	var f Forgotten
	if err := json.Unmarshal(e.Value(), &f); err != nil {
		return Forgotten{}, false, fmt.Errorf("presence: forgotten edge %s: %w", domain, err)
	}
	return f, true, nil
}

// Unforget deletes the record of a forgotten edge, so that it sources its log into the
// region's again at its next check. It returns false when there was none.
func Unforget(ctx context.Context, region jetstream.JetStream, domain string) (bool, error) {
	if _, found, err := EdgeForgotten(ctx, region, domain); err != nil || !found {
		return false, err
	}
	kv, err := forgottenBucket(ctx, region, false)
	if err != nil {
		return false, fmt.Errorf("presence: bucket %s: %w", BucketForgotten, err)
	}
	if err := kv.Delete(ctx, domain); err != nil {
		return false, fmt.Errorf("presence: unforget edge %s: %w", domain, err)
	}
	return true, nil
}

// endEdgeSessions ends the edge's sessions the region's rooms bucket shows, each room read
// once it has folded what the region's log holds for it (the source is gone: nothing more
// of the edge's arrives), then waits (bounded) for the bucket to show them ended.
func endEdgeSessions(ctx context.Context, region jetstream.JetStream, req ForgetRequest, res *ForgetResult) error {
	rooms, err := region.KeyValue(ctx, eventlog.BucketRooms)
	if err != nil {
		return fmt.Errorf("presence: bucket %s: %w", eventlog.BucketRooms, err)
	}
	stream, err := region.Stream(ctx, eventlog.StreamEvents)
	if err != nil {
		return fmt.Errorf("presence: stream %s: %w", eventlog.StreamEvents, err)
	}
	app := eventlog.NewAppender(region, req.Writer)
	defer app.Close()
	detail := "node " + req.Node + " lost: forgotten by " + res.By
	ghost := func(r projections.Room, node string) bool { return node == req.Node }
	current := func(ctx context.Context, room string) (projections.Room, uint64, error) {
		head, err := eventlog.NewAppender(region, req.Writer).LastSeq(ctx, room)
		if err != nil {
			return projections.Room{}, 0, err
		}
		r, _, err := projections.LoadRoomCurrent(ctx, rooms, stream, room, 5*time.Second)
		return r, head, err
	}
	n, touched, err := endWhere(ctx, rooms, current, app, ghost, func(string) Ending {
		return Ending{By: req.Writer, Detail: detail, Time: time.Now()}
	})
	res.Ended, res.Rooms = n, touched
	if err != nil {
		return err
	}
	settle := req.Settle
	if settle <= 0 {
		settle = 10 * time.Second
	}
	deadline := time.Now().Add(settle)
	for {
		if res.Remaining, err = countOn(ctx, rooms, req.Node); err != nil || res.Remaining == 0 || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// endWhere is End with each affected room reread through current (its state, once folded up
// to the log's head for it, and that head) before its ends are decided; it returns the
// sessions ended and the rooms written, not counting ends stored before (duplicates).
func endWhere(ctx context.Context, rooms jetstream.KeyValue, current func(context.Context, string) (projections.Room, uint64, error),
	app Appender, ghost func(projections.Room, string) bool, ending func(string) Ending) (int, int, error) {
	all, err := projections.Rooms(ctx, rooms)
	if err != nil {
		return 0, 0, err
	}
	n, touched := 0, 0
	for _, r := range all {
		if !hasGhost(r, ghost) {
			continue
		}
		r, head, err := current(ctx, r.Room)
		if err != nil {
			return n, touched, err
		}
		var evs []events.Envelope
		for _, node := range ghostNodes(r, ghost) {
			more, err := EndSessions(r, node, ending(node))
			if err != nil {
				return n, touched, err
			}
			evs = append(evs, more...)
		}
		if len(evs) == 0 {
			continue
		}
		seq, err := app.Append(ctx, evs...)
		if err != nil {
			return n, touched, fmt.Errorf("presence: end sessions in room %s: %w", r.Room, err)
		}
		if seq <= head {
			continue // every event was a duplicate (JetStream acks one with the first copy's sequence): written before
		}
		touched++
		n += countLeft(evs)
	}
	return n, touched, nil
}

func hasGhost(r projections.Room, ghost func(projections.Room, string) bool) bool {
	return len(ghostNodes(r, ghost)) > 0
}

// countOn counts the sessions the rooms bucket shows on node.
func countOn(ctx context.Context, rooms jetstream.KeyValue, node string) (int, error) {
	all, err := projections.Rooms(ctx, rooms)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range all {
		for _, p := range r.Peers {
			if p.Node == node {
				n++
			}
		}
	}
	return n, nil
}

// SourceState is what KeepEdgeSourced found and did.
type SourceState int

const (
	// SourcePresent: the region's log sourced the edge's already.
	SourcePresent SourceState = iota
	// SourceAdded: the edge's log was added to the region's sources.
	SourceAdded
	// SourceForgotten: the region forgot the edge; its log is not (or no longer) sourced.
	SourceForgotten
)

// KeepEdgeSourced is an edge's periodic check (through region, a JetStream of the region's
// domain) that the region's log sources its own, whose domain is domain: it adds the source
// unless the region forgot the edge, and then takes out a source it finds anyway (an add of
// its own that raced the forget). The record is returned for SourceForgotten.
func KeepEdgeSourced(ctx context.Context, region jetstream.JetStream, domain string) (SourceState, Forgotten, error) {
	f, forgotten, err := EdgeForgotten(ctx, region, domain)
	if err != nil {
		return SourcePresent, f, err
	}
	if forgotten {
		_, err := eventlog.RemoveEdgeSource(ctx, region, domain)
		return SourceForgotten, f, err
	}
	added, err := eventlog.AddEdgeSource(ctx, region, domain)
	if added {
		return SourceAdded, f, err
	}
	return SourcePresent, f, err
}

// ListForgotten returns the region's records of forgotten edges, by domain.
func ListForgotten(ctx context.Context, region jetstream.JetStream) ([]Forgotten, error) {
	kv, err := forgottenBucket(ctx, region, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("presence: bucket %s: %w", BucketForgotten, err)
	}
	var out []Forgotten
	err = projections.ReadInitial(ctx, kv, jetstream.AllKeys, func() { out = nil }, func(e jetstream.KeyValueEntry) error {
		var f Forgotten
		if err := json.Unmarshal(e.Value(), &f); err != nil {
			return fmt.Errorf("presence: forgotten edge %s: %w", e.Key(), err)
		}
		out = append(out, f)
		return nil
	})
	return out, err
}
