package devcluster

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Options shape the supercluster.
type Options struct {
	// Dir holds each node's data directory and config file (default ./data/dev-cluster).
	Dir string
	// BasePort is the first of the ports the nodes use, ten per node (default 14000).
	BasePort int
	// AuthKey is the system's signing key, kid=base64secret, given to every node.
	AuthKey string
	// Regions name the regions (default east, west); NodesPerRegion (default 3) routed nodes
	// each, plus one edge.
	Regions        []string
	NodesPerRegion int
}

// Defaults are the documented defaults.
func Defaults() Options {
	return Options{Dir: filepath.Join("data", "dev-cluster"), BasePort: 14000, Regions: []string{"east", "west"}, NodesPerRegion: 3}
}

// Role of a node in the plan.
type Role string

// The roles.
const (
	RoleRegion Role = "region" // a routed node of a region, in the region's JetStream
	RoleEdge   Role = "edge"   // a leaf of the region's first node, with its own JetStream domain
)

// Node is one planned node.
type Node struct {
	Name, Region string
	Role         Role
	HTTP         string // base URL
	// Args are the arguments of `jetmedia` that run it (serve and its flags).
	Args []string
	// Config is the content of its --nats-config file ("" for none); ConfigPath where it goes.
	Config, ConfigPath string
}

// Port offsets within a node's block of ten.
const (
	offHTTP = iota
	offUDP
	offNATS
	offCluster
	offGateway
	offLeaf
	portsPerNode = 10
)

// Plan lays out the nodes: for each region, NodesPerRegion routed nodes (the first one also a
// hub for the region's edge) whose gateway block in their --nats-config names every other
// region's gateway ports, then the region's edge.
func Plan(o Options) ([]Node, error) {
	if len(o.Regions) < 1 || o.NodesPerRegion < 1 {
		return nil, fmt.Errorf("devcluster: want at least one region of one node, got %d regions of %d", len(o.Regions), o.NodesPerRegion)
	}
	if o.AuthKey == "" {
		return nil, fmt.Errorf("devcluster: an auth key is required (every node must share it)")
	}
	perRegion := o.NodesPerRegion + 1
	last := o.BasePort + len(o.Regions)*perRegion*portsPerNode
	if o.BasePort < 1024 || last > 65535 {
		return nil, fmt.Errorf("devcluster: ports %d-%d out of range", o.BasePort, last)
	}
	port := func(region, i, off int) int { return o.BasePort + (region*perRegion+i)*portsPerNode + off }
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }

	var nodes []Node
	for r, region := range o.Regions {
		var routes []string
		for i := range o.NodesPerRegion {
			routes = append(routes, "nats://"+addr(port(r, i, offCluster)))
		}
		for i := range o.NodesPerRegion {
			name := fmt.Sprintf("%s%d", region, i+1)
			n := Node{Name: name, Region: region, Role: RoleRegion, HTTP: "http://" + addr(port(r, i, offHTTP)),
				ConfigPath: filepath.Join(o.Dir, name+".conf")}
			n.Config = gatewayConfig(o, r, port(r, i, offGateway), func(other, j int) int { return port(other, j, offGateway) })
			n.Args = append(common(o, n, port(r, i, offHTTP), port(r, i, offUDP)),
				"--nats-listen", addr(port(r, i, offNATS)), "--cluster-name", region,
				"--cluster-listen", addr(port(r, i, offCluster)), "--routes", strings.Join(routes, ","))
			if n.Config != "" {
				// The log lives in the first region, whichever region's nodes come up first.
				n.Args = append(n.Args, "--nats-config", n.ConfigPath, "--log-region", o.Regions[0])
			}
			if i == 0 {
				n.Args = append(n.Args, "--leaf-listen", addr(port(r, i, offLeaf)))
			}
			nodes = append(nodes, n)
		}
		e := o.NodesPerRegion
		edge := Node{Name: region + "-edge", Region: region, Role: RoleEdge, HTTP: "http://" + addr(port(r, e, offHTTP))}
		edge.Args = append(common(o, edge, port(r, e, offHTTP), port(r, e, offUDP)),
			"--hub", "nats-leaf://"+addr(port(r, 0, offLeaf)))
		nodes = append(nodes, edge)
	}
	return nodes, nil
}

func common(o Options, n Node, httpPort, udpPort int) []string {
	return []string{"serve", "--name", n.Name, "--zone", n.Region, "--data", filepath.Join(o.Dir, n.Name),
		"--http", "127.0.0.1:" + strconv.Itoa(httpPort), "--udp-host", "127.0.0.1", "--udp-port", strconv.Itoa(udpPort),
		"--auth-key", o.AuthKey, "--lease-ttl", "8s", "--log-level", "warn"}
}

// gatewayConfig is a region node's --nats-config: its gateway, named for its region, with the
// gateway ports of every node of the other regions.
func gatewayConfig(o Options, region, listen int, gwPort func(region, node int) int) string {
	if len(o.Regions) < 2 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# written by jetmedia dev-cluster: the gateway of region %s\n", o.Regions[region])
	fmt.Fprintf(&b, "gateway {\n  name: %s\n  listen: \"127.0.0.1:%d\"\n  gateways: [\n", o.Regions[region], listen)
	for other, name := range o.Regions {
		if other == region {
			continue
		}
		var urls []string
		for j := range o.NodesPerRegion {
			urls = append(urls, fmt.Sprintf("%q", "nats://127.0.0.1:"+strconv.Itoa(gwPort(other, j))))
		}
		fmt.Fprintf(&b, "    { name: %s, urls: [%s] }\n", name, strings.Join(urls, ", "))
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}
