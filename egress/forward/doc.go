// Package forward moves one track's RTP from its media subject to every viewer of it on this
// node. Rewriter (per viewer) and Cache (per track) are sans-IO and allocation-free; Fanout is
// the shell that owns the subscription. With Hub.Audio, a room's audio fan-outs on a node
// follow one ranking of its speakers made from the publishers' level reports: only the
// loudest MaxStreams tracks reach viewers (audio.go). Congestion applies each viewer's
// bandwidth allocation (egress/allocate) to its outputs: a simulcast viewer is moved to the
// layer allotted, a video track paused only when not even its lowest layer fits. It imports the media bus, the
// audio-level core and the allocator only.
//
// Imports: pipeline/audiolevel, pipeline/mediabus, pipeline/stagetime, egress/allocate
package forward
