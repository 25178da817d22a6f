package rtc

import "github.com/jetmedia/jetmedia/events"

// TrackInfo describes a track a publisher sends, as its track.published records it (WHIP and
// RTMP publishers alike).
type TrackInfo struct {
	Track     string
	Kind      string
	Codec     string
	ClockRate uint32
	Channels  uint16
	Fmtp      string
}

// Published is the track.published event of the track, sent by peer.
func (t TrackInfo) Published(peer string) events.TrackPublished {
	return events.TrackPublished{
		Peer: peer, Track: t.Track, Kind: t.Kind, Codec: t.Codec, ClockRate: t.ClockRate,
		Channels: t.Channels, FmtpLine: t.Fmtp, Layers: []string{"0"},
	}
}

// PublishedTracks are a publisher's tracks in the order they started.
type PublishedTracks []string

// Unpublished is the track.unpublished event of every track, in order: what a publishing
// session's end records before its peer.left.
func (p PublishedTracks) Unpublished(peer string) []events.Payload {
	out := make([]events.Payload, 0, len(p)+1)
	for _, t := range p {
		out = append(out, events.TrackUnpublished{Peer: peer, Track: t})
	}
	return out
}
