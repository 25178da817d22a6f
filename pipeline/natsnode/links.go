package natsnode

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// Link is one of this server's connections to another server: a route inside its cluster, a
// gateway to another cluster, or a leaf connection.
type Link struct {
	Kind string `json:"kind"` // route, gateway, leaf
	// Remote names the server (route, leaf) or cluster (gateway) at the other end.
	Remote string `json:"remote"`
	Addr   string `json:"addr,omitempty"`
	// Outbound is whether this server dialled the link.
	Outbound bool   `json:"outbound,omitempty"`
	RTT      string `json:"rtt,omitempty"`
	InMsgs   int64  `json:"in_msgs"`
	OutMsgs  int64  `json:"out_msgs"`
	InBytes  int64  `json:"in_bytes"`
	OutBytes int64  `json:"out_bytes"`
}

// Links lists the server's routes, gateways and leaf connections, by kind then remote.
func (s *Server) Links() ([]Link, error) {
	var out []Link
	rz, err := s.ns.Routez(nil)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	for _, r := range rz.Routes {
		out = append(out, Link{Kind: "route", Remote: r.RemoteName, Addr: fmt.Sprintf("%s:%d", r.IP, r.Port), Outbound: r.DidSolicit,
			RTT: r.RTT, InMsgs: r.InMsgs, OutMsgs: r.OutMsgs, InBytes: r.InBytes, OutBytes: r.OutBytes})
	}
	gz, err := s.ns.Gatewayz(nil)
	if err != nil {
		return nil, fmt.Errorf("gateways: %w", err)
	}
	out = appendGateways(out, gz.OutboundGateways, true)
	out = appendGateways(out, flattenInbound(gz.InboundGateways), false)
	lz, err := s.ns.Leafz(nil)
	if err != nil {
		return nil, fmt.Errorf("leaf connections: %w", err)
	}
	for _, l := range lz.Leafs {
		out = append(out, Link{Kind: "leaf", Remote: l.Name, Addr: fmt.Sprintf("%s:%d", l.IP, l.Port), Outbound: l.IsSpoke,
			RTT: l.RTT, InMsgs: l.InMsgs, OutMsgs: l.OutMsgs, InBytes: l.InBytes, OutBytes: l.OutBytes})
	}
	slices.SortStableFunc(out, func(a, b Link) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Remote, b.Remote)
	})
	return out, nil
}

func flattenInbound(in map[string][]*server.RemoteGatewayz) map[string]*server.RemoteGatewayz {
	out := map[string]*server.RemoteGatewayz{}
	for name, list := range in {
		for i, g := range list {
			out[fmt.Sprintf("%s#%d", name, i)] = g
		}
	}
	return out
}

func appendGateways(out []Link, gws map[string]*server.RemoteGatewayz, outbound bool) []Link {
	for name, g := range gws {
		if g == nil || g.Connection == nil {
			continue
		}
		c := g.Connection
		remote, _, _ := strings.Cut(name, "#")
		out = append(out, Link{Kind: "gateway", Remote: remote, Addr: fmt.Sprintf("%s:%d", c.IP, c.Port), Outbound: outbound,
			RTT: c.RTT, InMsgs: c.InMsgs, OutMsgs: c.OutMsgs, InBytes: c.InBytes, OutBytes: c.OutBytes})
	}
	return out
}
