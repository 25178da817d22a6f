package rtcclient

import "github.com/jetmedia/jetmedia/egress/forward"

// StartsKeyFrame reports whether an RTP payload of codec (a MIME type, e.g. video/VP8)
// begins a key frame: a VP8 intra frame's first partition, or an H.264 IDR picture or the
// SPS sent ahead of it. Other codecs report false. It is the node's own test
// (forward.PayloadStartsKeyframe), so the client sees key frames as the node does.
func StartsKeyFrame(mime string, payload []byte) bool {
	return forward.PayloadStartsKeyframe(mime, payload)
}
