// Package bwe is the node's send-side bandwidth estimator, one per viewer connection, sans-IO:
//
//   - ParseFeedback reads a transport-wide congestion control feedback message
//     (draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1) in place: no copy, no
//     allocation, every length checked against the packet (bad input is an error, never a
//     panic, and its cost is bounded by the 16-bit packet count).
//   - History keeps the send time and size of the last HistorySize packets of a connection,
//     indexed by transport-wide sequence number, written lock-free by the goroutines that send
//     (several fan-out lanes may write one viewer's tracks at once).
//   - Estimator turns feedback into an estimate: a delay-gradient (trendline) detector over
//     groups of packets sent together, an AIMD rate bounded by what the viewer acknowledged,
//     and a loss-based bound; the estimate is the smaller. It is updated only when feedback
//     arrives (time passed in), so there is no goroutine or ticker per viewer.
//
// It replaces pion/interceptor's GCC on the node's hot path: GCC allocates per packet sent (a
// list element, an attributes map) and per feedback (the parsed message, acknowledgement
// slices), and runs a goroutine per estimator. The shell that feeds it (the transport-wide
// sequence numbers, the RTCP tap) is pipeline/rtc's.
//
// It imports the standard library only.
//
// Imports: none
package bwe
