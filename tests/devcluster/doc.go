// Package devcluster is the engine of `jetmedia dev-cluster`: a local supercluster on
// loopback, two regions of three routed nodes joined by gateways, each with one edge (a leaf
// with its own JetStream domain), every node a `jetmedia serve` child process. Plan lays the
// topology out (names, ports, flags, the gateway config files) as pure data; Run writes the
// files, starts the processes, waits until each answers /readyz and stops them all when its
// context ends. docs/cluster.md walks through it.
//
// It is a tool of the same kind as tests/loadgen: it drives the binary from outside, through
// its flags and HTTP, never through the server's packages.
package devcluster
