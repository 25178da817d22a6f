package signal

import (
	"slices"
	"time"
)

// PauseAfter is how long a layer of a client's own simulcast track stays unwatched (nobody on
// any node receives it) before the client is told to stop sending it. It also holds from the
// track's first report, so a publisher sends every layer for its first seconds.
const PauseAfter = 5 * time.Second

// sentLayers is what the core told a client to send of one simulcast track.
type sentLayers struct {
	active []string             // lowest first; nil before the first report
	since  map[string]time.Time // when each layer was last seen watched (or first reported)
}

// LayersWatched: the shell reports, for a simulcast track the client publishes (layers lowest
// first), which layers somebody receives now. The client is to send the lowest layer always
// (a new viewer and the congestion control fall back on it) and every other layer while it is
// watched or has been watched within PauseAfter; when that set changes the client gets
// layers_active. A client that ignores the message sends every layer, as before.
func (c *Core) LayersWatched(now time.Time, track string, layers, watched []string) Output {
	if c.closed || len(layers) < 2 {
		return Output{}
	}
	if c.sent == nil {
		c.sent = map[string]*sentLayers{}
	}
	st := c.sent[track]
	if st == nil {
		st = &sentLayers{since: map[string]time.Time{}}
		for _, l := range layers {
			st.since[l] = now
		}
		c.sent[track] = st
	}
	active := []string{layers[0]}
	for _, l := range layers[1:] {
		if slices.Contains(watched, l) {
			st.since[l] = now
		}
		if seen, ok := st.since[l]; ok && now.Sub(seen) < PauseAfter {
			active = append(active, l)
		}
	}
	if st.active == nil {
		st.active = layers // the client starts with every layer on
	}
	if slices.Equal(active, st.active) {
		return Output{}
	}
	st.active = active
	return Output{Send: []ServerMessage{{Type: TypeLayersActive, LayersActive: &LayersActive{Track: track, Layers: slices.Clone(active)}}}}
}

// ForgetLayers drops what LayersWatched kept of a track that ended.
func (c *Core) ForgetLayers(track string) { delete(c.sent, track) }
