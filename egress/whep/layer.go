package whep

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"

	"github.com/jetmedia/jetmedia/egress/forward"
	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/rtc"
)

// LayerRel is the link relation of the WHEP draft's layer extension: the answer's Link
// header names the session's layer URL with it.
const LayerRel = "urn:ietf:params:whep:ext:core:layer"

// LayerRequest is the body of a POST to a session's layer URL (the WHEP draft's layer
// selection): EncodingID is the simulcast layer (RID) to receive, "" to let the node choose
// from the viewer's bandwidth and size again; MediaID, if given, is the track it applies to
// (default: every simulcast track of the session).
type LayerRequest struct {
	MediaID    string `json:"mediaId,omitempty"`
	EncodingID string `json:"encodingId"`
}

// LayerState is one track's entry in the answer to a GET of the layer URL.
type LayerState struct {
	MediaID string   `json:"mediaId"`
	Layers  []string `json:"layers"`
	// Active is the layer the viewer receives; Requested the one it asked for ("": automatic).
	Active    string `json:"active"`
	Requested string `json:"requested,omitempty"`
}

// maxLayerBody bounds a layer request.
const maxLayerBody = 4 << 10

// selectLayer serves POST /whep/{room}/s/{session}/layer: 204 once the choice is recorded
// (the switch happens at the new layer's next key frame), 400 for a bad body or a layer the
// track does not have, 404 for no such session or track.
func (h *Handler) selectLayer(w http.ResponseWriter, r *http.Request) {
	tracks, err := h.sessionTracks(r)
	if err == nil {
		err = applyLayer(r, tracks)
	}
	if err != nil {
		rtc.WriteError(w, r, h.ep.Log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func applyLayer(r *http.Request, tracks []*forward.Track) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxLayerBody))
	if err != nil {
		return rtc.Errorf(http.StatusRequestEntityTooLarge, "layer request too large or unreadable: %v", err)
	}
	var req LayerRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return rtc.Errorf(http.StatusBadRequest, "layer request is not JSON {\"encodingId\": ...}: %v", err)
	}
	var chosen []*forward.Track
	for _, t := range tracks {
		if req.MediaID == "" || req.MediaID == t.TrackID {
			chosen = append(chosen, t)
		}
	}
	if len(chosen) == 0 {
		return rtc.Errorf(http.StatusNotFound, "the session plays no simulcast track %q", req.MediaID)
	}
	for _, t := range chosen {
		if req.EncodingID != "" && !slices.Contains(t.Layers, req.EncodingID) {
			return rtc.Errorf(http.StatusBadRequest, "track %s has no layer %q (layers %v)", t.TrackID, req.EncodingID, t.Layers)
		}
	}
	for _, t := range chosen {
		if err := t.SetTarget(func(lt *forward.LayerTarget) { lt.Manual = req.EncodingID }); err != nil {
			return rtc.Errorf(http.StatusServiceUnavailable, "%v", err)
		}
	}
	return nil
}

// layers serves GET /whep/{room}/s/{session}/layer: the session's simulcast tracks, their
// layers and the active and requested one.
func (h *Handler) layers(w http.ResponseWriter, r *http.Request) {
	tracks, err := h.sessionTracks(r)
	if err != nil {
		rtc.WriteError(w, r, h.ep.Log, err)
		return
	}
	out := make([]LayerState, 0, len(tracks))
	for _, t := range tracks {
		out = append(out, LayerState{MediaID: t.TrackID, Layers: t.Layers, Active: t.Layer(), Requested: t.Target().Manual})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// sessionTracks finds the simulcast tracks of the session a layer request names, for its
// owner.
func (h *Handler) sessionTracks(r *http.Request) ([]*forward.Track, error) {
	s, err := h.cfg.Sessions.FindOwned(r, h.ep.Auth, events.TransportWHEP)
	if err != nil {
		return nil, err
	}
	v, ok := h.playing.in(s.Room)[s]
	if !ok {
		return nil, rtc.Errorf(http.StatusNotFound, "session %s is not playing", s.ID)
	}
	return v.simulcast(), nil
}

// layersOf is the layer list a forward.Track takes for spec: none for a single layer.
func layersOf(spec TrackSpec) []string {
	if len(spec.Layers) < 2 {
		return nil
	}
	return spec.Layers
}
