// Package client is the Go SDK of jetmedia rooms: join a room over the signalling WebSocket,
// publish pion tracks, receive the other peers' tracks, room events and data messages. It is
// built on pion and speaks the protocol of package signal (schemas/signal).
//
// The browser SDK, its JavaScript twin, is package browser below.
//
// Imports: ingress/signal
package client
