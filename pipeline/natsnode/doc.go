// Package natsnode runs the embedded nats-server a jetmedia node is built on, in every topology
// (alone, routed cluster, leaf of a hub), and hands out in-process connections to it.
//
// It may import nats-server and nats.go; nothing of jetmedia.
//
// Imports: none
package natsnode
