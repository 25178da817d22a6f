// Package allocate decides, for one viewer, what each of its tracks may send: audio first,
// then video layers by priority, within the viewer's bandwidth estimate, with hysteresis on
// the way up and time-based probes (an estimate only grows with what is sent, so a paused or
// lowered track is tried one layer higher now and then, with a backoff that doubles after each
// probe the path could not carry, up to a bound that keeps recovery after a freed path
// short). A probe the estimate covers for a second is confirmed and the next layer up is tried
// at once; an estimate that carries several layers with margin moves up to the highest of
// them in one step. It is a sans-IO core: now, the estimate and the tracks in, a plain
// Allocation (track → layer and bit rate) out. The forwarder applies it (egress/forward's
// Congestion): pausing a single-layer track, moving a simulcast viewer between layers.
//
// Imports: none
package allocate
