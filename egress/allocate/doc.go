// Package allocate decides, for one viewer, what each of its tracks may send: audio first,
// then video layers by priority, within the viewer's bandwidth estimate, with hysteresis on
// the way up and time-based probes (an estimate only grows with what is sent, so a paused or
// lowered track is tried one layer higher now and then, with a backoff that doubles after each
// probe the path could not carry). It is a sans-IO core: now, the estimate and the tracks in,
// a plain Allocation (track → layer and bit rate) out. The forwarder applies it: today by
// pausing and resuming a track's one layer (egress/forward), with simulcast by its
// per-viewer layer choice.
//
// Imports: none
package allocate
