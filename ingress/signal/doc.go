// Package signal is the room SDK's signalling: a WebSocket at /rtc carrying versioned JSON
// messages (schemas/signal), one PeerConnection per client renegotiated in both directions.
//
// Core is the sans-IO session core: the shared rtc.Lifecycle (join and leave, connect timeout
// once media is negotiated, disconnect grace, keyframe throttle, close reasons) plus the
// room's signalling: it takes the client's messages, the room's KV state (watched, never
// in-memory lists, so every node sees the same room), data messages and published tracks, and
// returns events to append, messages to send and tracks to subscribe. Handler is the shell:
// the WebSocket, the pion PeerConnection, the KV watch, the data subjects and the media bus;
// each session is an rtc.Session in the node's one registry. A session's loop runs apart from
// its WebSocket, so a socket that drops can be replaced by a resume within the grace period
// (Config.ResumeGrace); the core decides (SocketClosed, Tick, Resume), the loop only swaps
// sockets. A session whose room watch stays behind the node's one watch of room records
// (Handler.RoomWritten) replaces it, and the core resyncs from the new watch's initial state
// (KVResync, KVResynced): a watch whose consumer died with a node can stay silent for good.
//
// It imports events, pipeline (auth, mediabus, rtc), nats.go for the KV watch and data
// subjects, and the WebSocket library; never egress (subscribed tracks come from a Deliverer
// that cmd wires to egress/forward), cmd or projections' runners.
//
// Imports: events, pipeline/audiolevel, pipeline/auth, pipeline/mediabus, pipeline/rtc
package signal
