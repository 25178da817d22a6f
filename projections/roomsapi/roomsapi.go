package roomsapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

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
		return strings.Compare(a.Peer+"."+a.Track, b.Peer+"."+b.Track)
	})
	return v
}

// Authorizer lets a request to an admin endpoint of room (auth.AnyRoom for the endpoints that
// span rooms) through, or answers 401/403 and returns false. The node's wiring supplies it.
type Authorizer func(w http.ResponseWriter, r *http.Request, room string) bool

// API serves the rooms bucket.
type API struct {
	Rooms     jetstream.KeyValue
	Authorize Authorizer
	Logger    *slog.Logger
}

// Register adds GET /v1/rooms and GET /v1/rooms/{room}.
func (a API) Register(mux *http.ServeMux) {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	mux.HandleFunc("GET /v1/rooms", a.list)
	mux.HandleFunc("GET /v1/rooms/{room}", a.room)
}

func (a API) list(w http.ResponseWriter, r *http.Request) {
	if !a.Authorize(w, r, auth.AnyRoom) {
		return
	}
	rooms, err := projections.Rooms(r.Context(), a.Rooms)
	if err != nil {
		rtc.WriteError(w, r, a.Logger, err)
		return
	}
	out := []RoomView{}
	for _, room := range rooms {
		if len(room.Peers) > 0 {
			out = append(out, ViewOf(room))
		}
	}
	WriteJSON(w, out)
}

func (a API) room(w http.ResponseWriter, r *http.Request) {
	id, ok := rtc.RoomFromPath(w, r, a.Logger)
	if !ok {
		return
	}
	if !a.Authorize(w, r, id) {
		return
	}
	room, err := projections.LoadRoom(r.Context(), a.Rooms, id)
	if err != nil {
		rtc.WriteError(w, r, a.Logger, err)
		return
	}
	if !room.Exists() {
		rtc.WriteError(w, r, a.Logger, rtc.Errorf(http.StatusNotFound, "room %q has no history", id))
		return
	}
	WriteJSON(w, ViewOf(room))
}

// WriteJSON answers 200 with v as JSON.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
