// Package app is jetmedia's hand-written wiring: it starts a node (embedded NATS, the event
// stream and buckets, the projection runner and read models, the WebRTC edge, WHIP, WHEP and
// the rooms WebSocket, the HTTP server) from one Config and stops it with Close. It owns no
// HTTP handler or page beyond /healthz and dev mode's /dev/token: each package registers what
// it serves (projections/roomsapi, historyapi, readmodels, pipeline/metrics, the ingress and
// egress transports, the pages beside their protocols), and app hands it its parts. The
// jetmedia binary and the end-to-end tests both use it.
package app
