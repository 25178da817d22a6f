// Package natsnode runs the embedded nats-server a jetmedia node is built on, in every topology
// (alone, routed cluster, leaf of a hub), and hands out in-process connections to it. Its
// storage guard (storage.go) notices when JetStream can no longer write (a full disk), so that
// appends fail at once, and restarts JetStream once space returns.
//
// It may import nats-server/nats.go and golang.org/x/sys (statfs); nothing of jetmedia.
//
// Imports: none
package natsnode
