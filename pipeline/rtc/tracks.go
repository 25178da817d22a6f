package rtc

import (
	"slices"

	"github.com/jetmedia/jetmedia/events"
)

// TrackInfo describes a track a publisher sends, as its track.published records it (WHIP and
// RTMP publishers alike).
type TrackInfo struct {
	Track     string
	Kind      string
	Codec     string
	ClockRate uint32
	Channels  uint16
	Fmtp      string
	// Layers are the simulcast layers (RIDs) lowest first; empty: the single layer "0".
	Layers []string
}

// Published is the track.published event of the track, sent by peer.
func (t TrackInfo) Published(peer string) events.TrackPublished {
	layers := t.Layers
	if len(layers) == 0 {
		layers = []string{SingleLayer}
	}
	return events.TrackPublished{
		Peer: peer, Track: t.Track, Kind: t.Kind, Codec: t.Codec, ClockRate: t.ClockRate,
		Channels: t.Channels, FmtpLine: t.Fmtp, Layers: slices.Clone(layers),
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
