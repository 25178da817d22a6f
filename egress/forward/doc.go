// Package forward moves one track's RTP from its media subject to every viewer of it on this
// node. Rewriter (per viewer) and Cache (per track) are sans-IO and allocation-free; Fanout is
// the shell that owns the subscription. With Hub.Audio, a room's audio fan-outs on a node
// follow one ranking of its speakers made from the publishers' level reports: only the
// loudest MaxStreams tracks reach viewers (audio.go). It imports the media bus and the
// audio-level core only.
//
// Imports: pipeline/audiolevel, pipeline/mediabus
package forward
