// Package mediabus is the media plane on core NATS: each track's RTP on md.<room>.<track>.<layer>,
// RTCP feedback toward the publisher on fb.<room>.<track>, audio-level reports on lv.<room>,
// data messages on dm.<room>[.<peer>], repair requests for packets lost between nodes on
// rp.<room>.<track>.<layer> (repair.go).
// A node's own packets skip NATS when no other server wants them. Never JetStream.
//
// It may import nats.go; nothing else of jetmedia (tests may use natsnode).
//
// Imports: none
package mediabus
