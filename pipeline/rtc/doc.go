// Package rtc holds what ingress and egress share at the media edge: the pion WebRTC API
// (codecs, interceptors, one ICE UDP port for every session), the HTTP contract of WHIP and
// WHEP (Endpoint: SDP bodies, bearer tokens, the session URL's DELETE, PATCH and OPTIONS, error
// replies) and the one session model every WebRTC transport composes:
//
//   - Lifecycle is the sans-IO session core (join and leave, connect timeout, disconnect grace,
//     keyframe-request throttle, close reasons). Inputs carry now; it reads no clock. WHIP,
//     WHEP and room cores embed it and add only what differs.
//   - Session is the actor around a core: inputs are serialised, outputs go to an ordered
//     outbox carried out by the session's own goroutine (events appended in order, PLIs sent,
//     the end logged and the PeerConnection closed), so no I/O happens under a lock.
//   - Registry holds every session of a node, ticks their cores and ends them on Close.
//
// Levels taps a published audio track's read loop: each packet's audio level (RFC 6464)
// feeds the track's meter, whose speaking changes the session records and whose reports go
// to a LevelReporter.
//
// FastIngest (Config.FastIngest, --fast-ingest) moves a publisher's RTP from the edge's
// socket reader to the stream's sender with one goroutine hand-off instead of pion's four:
// SRTPKeys derives the session's SRTP keys from its DTLS handshake, the reader decrypts, the
// stream's goroutine runs pion's receive interceptors and sends; pion keeps the rest.
//
// ReadRTP is the one loop that moves a published track's RTP onward. It sits in pipeline
// because both transports' directions depend on it and neither may import the other. It
// imports events, pipeline/auth and pion; never NATS (its Appender, RTPSender and
// FeedbackSender are the interfaces the NATS side fills in).
//
// Imports: events, pipeline/audiolevel, pipeline/auth, pipeline/bwe, pipeline/pacer, pipeline/stagetime
package rtc
