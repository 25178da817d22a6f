// Package load is the engine of `jetmedia load`: synthetic WHIP publishers and WHEP
// subscribers that drive a running server through its public URL only, and the accounting
// that turns what they saw into a report (packets, loss, end-to-end latency, join time,
// server CPU and memory).
//
// Payloads carry their send time and a per-track sequence number (see probe.go), so the tool
// measures latency and loss itself, on one machine, without a real encoder or decoder. The
// accounting (histograms, percentiles, loss, pacing, /proc parsing) is pure functions; the
// pion clients and the run loop around them are the thin I/O shell.
//
// It may import pion and the standard library, never the server's packages: it is a client
// like any other.
package load
