package app

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/egress/whep"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/auth"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
	"github.com/jetmedia/jetmedia/projections"
)

// RoomView is the JSON form of a room's live state in the HTTP API and `jetmedia rooms`.
type RoomView struct {
	projections.Room
	Peers  []projections.Peer         `json:"peers"`
	Tracks []projections.Track        `json:"tracks"`
	Subs   []projections.Subscription `json:"subscriptions"`
}

// ViewOf turns a folded room into its JSON view with stable ordering.
func ViewOf(r projections.Room) RoomView {
	v := RoomView{Room: r, Peers: []projections.Peer{}, Tracks: []projections.Track{}, Subs: []projections.Subscription{}}
	for _, id := range r.PeerIDs() {
		v.Peers = append(v.Peers, r.Peers[id])
	}
	for _, id := range r.TrackIDs() {
		v.Tracks = append(v.Tracks, r.Tracks[id])
	}
	for _, s := range r.Subs {
		v.Subs = append(v.Subs, s)
	}
	slices.SortFunc(v.Subs, func(a, b projections.Subscription) int {
		return compare(a.Peer+"."+a.Track, b.Peer+"."+b.Track)
	})
	return v
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (n *Node) registerAPI(mux *http.ServeMux) {
	for pattern, h := range n.historyRoutes() {
		mux.HandleFunc(pattern, n.adminOnly(h))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"status": "ok", "node": n.cfg.Name})
	})
	mux.HandleFunc("GET /v1/rooms", func(w http.ResponseWriter, r *http.Request) {
		if !n.authorizeAdmin(w, r, auth.AnyRoom) {
			return
		}
		rooms, err := projections.Rooms(r.Context(), n.rooms)
		if err != nil {
			rtc.WriteError(w, r, n.log, err)
			return
		}
		out := []RoomView{}
		for _, room := range rooms {
			if len(room.Peers) > 0 {
				out = append(out, ViewOf(room))
			}
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /v1/rooms/{room}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("room")
		if !events.ValidID(id) {
			rtc.WriteError(w, r, n.log, rtc.Errorf(http.StatusBadRequest, "room %q is not a valid id", id))
			return
		}
		if !n.authorizeAdmin(w, r, id) {
			return
		}
		room, err := projections.LoadRoom(r.Context(), n.rooms, id)
		if err != nil {
			rtc.WriteError(w, r, n.log, err)
			return
		}
		if !room.Exists() {
			rtc.WriteError(w, r, n.log, rtc.Errorf(http.StatusNotFound, "room %q has no history", id))
			return
		}
		writeJSON(w, ViewOf(room))
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// catalog answers WHEP's "what does this room publish" from the rooms projection, so a viewer
// on any node sees what was published on any other.
type catalog struct{ kv jetstream.KeyValue }

func (c catalog) Published(ctx context.Context, room, peer string) (string, []whep.TrackSpec, error) {
	r, err := projections.LoadRoom(ctx, c.kv, room)
	if err != nil {
		return "", nil, err
	}
	if peer == "" {
		// The current publisher: the latest peer to join that publishes something.
		for _, id := range r.PeerIDs() {
			p := r.Peers[id]
			if hasTracks(r, id) && (peer == "" || p.JoinedAt.After(r.Peers[peer].JoinedAt)) {
				peer = id
			}
		}
		if peer == "" {
			return "", nil, whep.ErrNoPublisher
		}
	} else if _, ok := r.Peers[peer]; !ok {
		return "", nil, whep.ErrNoPeer
	}
	var specs []whep.TrackSpec
	for _, id := range r.TrackIDs() {
		t := r.Tracks[id]
		if t.Peer != peer {
			continue
		}
		specs = append(specs, whep.TrackSpec{Track: t.Track, Kind: t.Kind, Codec: t.Codec,
			ClockRate: t.ClockRate, Channels: t.Channels, Fmtp: t.FmtpLine, Since: t.PublishedAt})
	}
	if len(specs) == 0 {
		return "", nil, whep.ErrNoPublisher
	}
	return peer, specs, nil
}

func hasTracks(r projections.Room, peer string) bool {
	for _, t := range r.Tracks {
		if t.Peer == peer {
			return true
		}
	}
	return false
}
