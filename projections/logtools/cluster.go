package logtools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/projections/presence"
	"github.com/jetmedia/jetmedia/projections/projector"
)

// ClusterView is what `jetmedia cluster` shows: every node's lease, and where the log and the
// buckets are kept.
type ClusterView struct {
	Nodes   []NodeView   `json:"nodes"`
	Streams []StreamView `json:"streams"`
	// Projectors are the nodes writing the projections (the rooms bucket), from their leases.
	Projectors []ProjectorView `json:"projectors,omitempty"`
	// Edges are the JetStream domains of the edges whose logs the region's log sources;
	// Forgotten the edges the region forgot (jetmedia cluster forget).
	Edges     []string             `json:"edges,omitempty"`
	Forgotten []presence.Forgotten `json:"forgotten,omitempty"`
	// EdgeSources says, for each of Edges in its order, how the region's copying of that
	// edge's log goes.
	EdgeSources []EdgeSourceView `json:"edge_sources,omitempty"`
}

// EdgeSourceView is the region's source of one edge's log, as the region's EVENTS stream
// reports it (its leader's view).
type EdgeSourceView struct {
	Domain string `json:"domain"`
	// Node is the edge's node name when Domain is the default "edge-<node>", "" otherwise.
	Node string `json:"node,omitempty"`
	// Active is how long ago the region last heard from the edge's log: a copied event or the
	// source's heartbeat, which comes every second while the edge's JetStream answers. -1:
	// not since the stream's leader started sourcing it. A dead edge and one cut off go
	// silent alike.
	Active time.Duration `json:"active"`
	// Lag is how many of the edge's events the region had not copied when it last heard.
	Lag uint64 `json:"lag"`
	// Error is what the stream reports as failing in the copying, if anything.
	Error string `json:"error,omitempty"`
}

// ProjectorView is the lease of one projection's writer.
type ProjectorView struct {
	Projection string `json:"projection"`
	projector.Record
}

// NodeView is one node's lease as the bucket holds it.
type NodeView struct {
	presence.Lease
	// LeaseAge is how long ago the bucket stored the lease; Lost is whether it has expired.
	LeaseAge time.Duration `json:"lease_age"`
	Lost     bool          `json:"lost"`
}

// StreamView is one stream's (or bucket's) replication.
type StreamView struct {
	Name     string   `json:"name"`
	Replicas int      `json:"replicas"`
	Leader   string   `json:"leader,omitempty"`
	Peers    []string `json:"peers,omitempty"`
	Messages uint64   `json:"messages"`
}

// Cluster prints the nodes of the system with their zone, role, load and lease age, and the
// replicas and leader of the event log and the buckets.
func Cluster(ctx context.Context, js jetstream.JetStream, asJSON bool, stdout io.Writer) error {
	v, err := ReadCluster(ctx, js, time.Now())
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tZONE\tROLE\tSESSIONS\tCPU\tEGRESS\tLEASE\tHTTP")
	for _, n := range v.Nodes {
		lease := n.LeaseAge.Round(100*time.Millisecond).String() + " ago"
		if n.Lost {
			lease += " (lost)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.2f\t%s\t%s\t%s\n", n.Name, orDash(n.Zone), n.Role, n.Load.Sessions,
			n.Load.CPU, bitrate(n.Load.EgressBitrate), lease, orDash(n.HTTP))
	}
	if len(v.Nodes) == 0 {
		fmt.Fprintln(tw, "(no node has announced itself)")
	}
	if len(v.Projectors) > 0 {
		fmt.Fprintln(tw, "\nPROJECTION\tWRITER\tSINCE")
		for _, p := range v.Projectors {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Projection, orDash(p.Node), p.Since.Format(time.RFC3339))
		}
	}
	if len(v.Edges) > 0 || len(v.Forgotten) > 0 {
		fmt.Fprintln(tw, "\nEDGE DOMAIN\tSTATE")
		for _, e := range v.EdgeSources {
			fmt.Fprintf(tw, "%s\tsourced into the region's log (%s)\n", e.Domain, e.heard())
		}
		for _, f := range v.Forgotten {
			fmt.Fprintf(tw, "%s\tforgotten (edge %s, by %s at %s)\n", f.Domain, f.Node, f.By, f.At.Format(time.RFC3339))
		}
	}
	fmt.Fprintln(tw, "\nSTREAM\tREPLICAS\tLEADER\tMESSAGES")
	for _, s := range v.Streams {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", s.Name, s.Replicas, orDash(s.Leader), s.Messages)
	}
	return tw.Flush()
}

// ReadCluster reads the nodes bucket and the streams' replication at now.
func ReadCluster(ctx context.Context, js jetstream.JetStream, now time.Time) (ClusterView, error) {
	v := ClusterView{Nodes: []NodeView{}}
	kv, err := js.KeyValue(ctx, presence.BucketNodes)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		// No node of this version has run yet: no leases to show.
	case err != nil:
		return v, fmt.Errorf("bucket %s: %w", presence.BucketNodes, err)
	default:
		leases, err := presence.List(ctx, kv, now)
		if err != nil {
			return v, err
		}
		for _, l := range leases {
			v.Nodes = append(v.Nodes, NodeView{Lease: l.Lease, LeaseAge: l.Age, Lost: l.Expired()})
		}
	}
	if v.Projectors, err = readProjectors(ctx, js); err != nil {
		return v, err
	}
	if v.Edges, err = eventlog.EdgeSources(ctx, js); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return v, err
	}
	if v.Forgotten, err = presence.ListForgotten(ctx, js); err != nil {
		return v, err
	}
	for _, name := range []string{eventlog.StreamEvents, "KV_" + eventlog.BucketRooms, "KV_" + eventlog.BucketSnapshots,
		"KV_" + presence.BucketNodes, "KV_" + projector.Bucket} {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return v, fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return v, fmt.Errorf("stream %s: %w", name, err)
		}
		sv := StreamView{Name: name, Replicas: info.Config.Replicas, Messages: info.State.Msgs}
		if name == eventlog.StreamEvents {
			v.EdgeSources = edgeSources(v.Edges, info.Sources)
		}
		if info.Cluster != nil {
			sv.Leader = info.Cluster.Leader
			for _, p := range info.Cluster.Replicas {
				sv.Peers = append(sv.Peers, p.Name)
			}
		}
		v.Streams = append(v.Streams, sv)
	}
	return v, nil
}

// heard says when the region last heard from the edge's log.
func (e EdgeSourceView) heard() string {
	s := "not heard from"
	if e.Active >= 0 {
		s = fmt.Sprintf("heard from %s ago, %d behind", e.Active.Round(100*time.Millisecond), e.Lag)
	}
	if e.Error != "" {
		s += "; " + e.Error
	}
	return s
}

// edgeSources pairs the edges' domains with the sources' state in the region's stream info
// (an edge whose source the leader does not report yet: never heard from).
func edgeSources(domains []string, sources []*jetstream.StreamSourceInfo) []EdgeSourceView {
	byDomain := make(map[string]*jetstream.StreamSourceInfo, len(sources))
	for _, si := range sources {
		if d, ok := eventlog.EdgeSourceDomain(si.Name, si.External); ok {
			byDomain[d] = si
		}
	}
	var out []EdgeSourceView
	for _, d := range domains {
		ev := EdgeSourceView{Domain: d, Node: presence.EdgeNodeOf(d), Active: -1}
		if si := byDomain[d]; si != nil {
			ev.Active, ev.Lag = si.Active, si.Lag
			if si.Error != nil {
				ev.Error = si.Error.Error()
			}
		}
		out = append(out, ev)
	}
	return out
}

// readProjectors reads the rooms projection's lease (none before a node of this version ran,
// or while it changes hands).
func readProjectors(ctx context.Context, js jetstream.JetStream) ([]ProjectorView, error) {
	kv, err := js.KeyValue(ctx, projector.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", projector.Bucket, err)
	}
	e, err := kv.Get(ctx, projector.KeyRooms)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", projector.Bucket, err)
	}
	var r projector.Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, fmt.Errorf("bucket %s: lease %s: %w", projector.Bucket, projector.KeyRooms, err)
	}
	return []ProjectorView{{Projection: projector.KeyRooms, Record: r}}, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bitrate(bps uint64) string {
	switch {
	case bps >= 1_000_000:
		return fmt.Sprintf("%.1f Mb/s", float64(bps)/1e6)
	case bps >= 1_000:
		return fmt.Sprintf("%.0f kb/s", float64(bps)/1e3)
	}
	return fmt.Sprintf("%d b/s", bps)
}
