// Package natsnode runs the embedded nats-server a jetmedia node is built on, in every topology
// (alone, routed cluster, leaf of a hub), and hands out in-process connections to it.
//
// It may import events and nats-server/nats.go; nothing else of jetmedia.
package natsnode
