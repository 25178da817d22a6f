// Package pacer is the sans-IO pacing of what the node sends one viewer connection: a leaky
// bucket whose rate is a factor (2.5, as libwebrtc's senders) times the connection's
// bandwidth estimate. Packets within the budget go out at once (an uncongested connection
// pays a few arithmetic operations a packet and no latency); the excess waits in a bounded
// first-in first-out queue drained as the budget refills. Audio is never queued (it is sent
// at once and debited); once a connection has a queue, its later video and retransmissions
// wait behind it, so no stream is reordered. The queue is bounded in packets, bytes and
// time: the oldest queued packet is dropped first, and counted.
//
// Time is passed in (a time.Duration since any fixed origin); there is no goroutine, clock
// or lock: the shell (pipeline/rtc) owns those.
//
// It imports the standard library only.
//
// Imports: none
package pacer
