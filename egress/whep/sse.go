package whep

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// EventsRel is the link relation of the WHEP draft's server-sent events extension: the
// answer's Link header names the session's event stream with it (events="layers").
const EventsRel = "urn:ietf:params:whep:ext:core:server-sent-events"

const (
	// eventsEvery is how often an event stream looks at its session's layers.
	eventsEvery = 250 * time.Millisecond
	// keepAliveEvery is how often an idle stream sends a comment, so that proxies and the
	// server's write deadline do not cut it.
	keepAliveEvery = 15 * time.Second
	// eventWriteTimeout bounds writing one event: a reader that stops is cut off.
	eventWriteTimeout = 10 * time.Second
)

// LayersEvent is the data of a "layers" event: per simulcast track of the session (by track
// id, the draft's media id), its layers lowest first, the one the viewer receives now and the
// one it asked for ("" automatic).
type LayersEvent struct {
	Medias map[string]MediaLayers `json:"medias"`
}

// MediaLayers is one track's entry of a LayersEvent.
type MediaLayers struct {
	Layers    []EncodingInfo `json:"layers"`
	Current   string         `json:"current"`
	Requested string         `json:"requested,omitempty"`
}

// EncodingInfo names one layer (the draft's encodingId).
type EncodingInfo struct {
	EncodingID string `json:"encodingId"`
}

// subscribeEvents serves POST /whep/{room}/s/{session}/sse, the draft's subscription: a JSON
// array of event names; "layers" is the one this node sends (others are accepted and never
// sent). 201 with the stream's URL in Location.
func (h *Handler) subscribeEvents(w http.ResponseWriter, r *http.Request) {
	if _, err := h.cfg.Sessions.FindOwned(r, h.ep.Auth, events.TransportWHEP); err != nil {
		rtc.WriteError(w, r, h.ep.Log, err)
		return
	}
	var names []string
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLayerBody)).Decode(&names); err != nil {
		rtc.WriteError(w, r, h.ep.Log, rtc.Errorf(http.StatusBadRequest, "an event subscription is a JSON array of event names, such as [\"layers\"]: %v", err))
		return
	}
	w.Header().Set("Location", r.URL.Path)
	w.WriteHeader(http.StatusCreated)
}

// streamEvents serves GET /whep/{room}/s/{session}/sse: text/event-stream of "layers" events,
// one at once and one each time a simulcast track's layers, current or requested layer
// changes, until the session or the request ends. 404 for no such session.
func (h *Handler) streamEvents(w http.ResponseWriter, r *http.Request) {
	s, err := h.cfg.Sessions.FindOwned(r, h.ep.Auth, events.TransportWHEP)
	if err != nil {
		rtc.WriteError(w, r, h.ep.Log, err)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(eventsEvery)
	defer tick.Stop()
	var last []byte
	quiet := time.Now()
	for {
		v, ok := h.playing.in(s.Room)[s]
		if !ok {
			return // the session ended
		}
		b, err := json.Marshal(layersEvent(v))
		if err != nil {
			return
		}
		var out string
		switch {
		case !slices.Equal(b, last):
			out, last = fmt.Sprintf("event: layers\ndata: %s\n\n", b), b
		case time.Since(quiet) >= keepAliveEvery:
			out = ": keep-alive\n\n"
		}
		if out != "" {
			_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
			if _, err := w.Write([]byte(out)); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			quiet = time.Now()
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// layersEvent is the layers of v's simulcast tracks now.
func layersEvent(v *viewer) LayersEvent {
	ev := LayersEvent{Medias: map[string]MediaLayers{}}
	for _, t := range v.simulcast() {
		m := MediaLayers{Current: t.Layer(), Requested: t.Target().Manual}
		for _, l := range t.Layers {
			m.Layers = append(m.Layers, EncodingInfo{EncodingID: l})
		}
		ev.Medias[t.TrackID] = m
	}
	return ev
}
