// Package app is jetmedia's hand-written wiring: it starts a node (embedded NATS, the event
// stream and buckets, the projection runner, the WebRTC edge, WHIP and WHEP, the HTTP API) from
// one Config and stops it with Close. The jetmedia binary and the end-to-end tests both use it.
package app
