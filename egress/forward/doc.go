// Package forward moves one track's RTP from its media subject to every viewer of it on this
// node. Rewriter (per viewer) and Cache (per track) are sans-IO and allocation-free; Fanout is
// the shell that owns the subscription. It imports the media bus only.
//
// Imports: pipeline/mediabus, pipeline/stagetime
package forward
