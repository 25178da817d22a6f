// Package stagetime times the stages of the node's forward path on a live node, so that each
// millisecond between a publisher's packet reaching the node's socket and its copies leaving
// for the viewers is accounted for: lock-free histograms the media path writes (a clock read
// per source packet, per lane and per batched send, never per viewer) and the metrics read at
// scrape time.
//
// The stages, in the order a packet meets them:
//
//   - Ingest: the edge socket's read of the publisher's datagram until the node's fan-out of
//     the track has the packet: pion's ICE/DTLS demultiplexing, SRTP decryption,
//     interceptors, the goroutine hand-offs between them, the publisher's read loop and the
//     media bus.
//   - Fanout: the fan-out's start until one lane has written the packet to all its viewers
//     (per lane: a worker lane's goroutine wake-up included): rewriting, pion's per-viewer
//     write path (SRTP encryption), the copy into the edge's batch.
//   - Queue: how long the oldest packet of a send waited in the edge's batches for its sender.
//   - Send: the system calls of one send (sendmmsg, with GSO where the kernel has it).
//
// It imports the standard library only.
//
// Imports: none
package stagetime
