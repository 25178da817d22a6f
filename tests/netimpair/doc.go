// Package netimpair is the tests' network-impairing UDP relay: placed between a media node
// and one client, it drops datagrams at random, delays them with jitter and caps each
// direction's bit rate with a token bucket and a tail-dropping queue, all changeable while
// media flows. A client is pointed at it by rewriting the node's candidates in the SDP
// answers it receives (Relay.Answers), so neither the node nor the client is changed. The
// link model (link.go) is sans-IO: arrival time in, verdict and departure time out.
//
// Imports: none
package netimpair
