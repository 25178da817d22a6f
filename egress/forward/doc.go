// Package forward moves one track's RTP from its media subject to every viewer of it on this
// node. Rewriter (per viewer) and Cache (per track) are sans-IO and allocation-free; Fanout is
// the shell that owns the subscription. Congestion applies each viewer's bandwidth
// allocation (egress/allocate) to its outputs. It imports the media bus and the allocator.
//
// Imports: pipeline/mediabus, egress/allocate
package forward
