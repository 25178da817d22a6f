package presence

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// Placement: a new WHIP, WHEP or room (/rtc) session asked of any node is served there or
// sent to the node that should serve it, read from the leases (each node's zone, HTTP
// address, sessions and admission limit). Sans-IO: Choose and Place take the leases as read;
// Placer is the HTTP shell for WHIP and WHEP (a 307), ingress/signal the room protocol's (a
// redirect message: browsers do not follow a redirect on a WebSocket handshake).

// ErrFull means every node that could serve the session is at its --max-sessions.
var ErrFull = errors.New("presence: every node is at its session limit")

// ErrNodeFull means this node is at its --max-sessions and does not send the session
// elsewhere (placement off, or the request was placed here already).
var ErrNodeFull = errors.New("presence: this node is at its session limit")

// PlacedParam marks a request a node already redirected: the node it was sent to serves it (or
// refuses it when full), so that two nodes reading leases of different ages never bounce a
// client between them.
const PlacedParam = "jm_placed"

// Slack is how many more sessions this node may have than the least loaded one before it
// sends a client there: loads in leases are up to a renewal old, and a few sessions' spread
// is not worth a client's extra round trip.
const Slack = 2

// full reports whether a node has reached its admission limit.
func full(l Lease) bool { return l.MaxSessions > 0 && l.Load.Sessions >= l.MaxSessions }

// Choose picks the node for a new session: among live nodes with an HTTP address that are not
// full, those in zone (the client's, or this node's when the client gives none) if any, else
// all; of those the least loaded by sessions, this node itself unless another has more than
// Slack fewer. It returns self's name to serve locally.
func Choose(self Lease, zone string, leases []Observed) (Lease, error) {
	if zone == "" {
		zone = self.Zone
	}
	var inZone, others []Lease
	for _, o := range leases {
		if o.Name == self.Name || o.Expired() || o.HTTP == "" || full(o.Lease) {
			continue
		}
		others = append(others, o.Lease)
		if o.Zone == zone {
			inZone = append(inZone, o.Lease)
		}
	}
	selfOK := !full(self)
	pool, selfIn := others, selfOK
	switch {
	case selfOK && self.Zone == zone:
		pool = inZone
	case len(inZone) > 0:
		pool, selfIn = inZone, false
	}
	if len(pool) == 0 {
		if selfIn {
			return self, nil
		}
		return Lease{}, ErrFull
	}
	best := pool[0]
	for _, l := range pool[1:] {
		if l.Load.Sessions < best.Load.Sessions || l.Load.Sessions == best.Load.Sessions && l.Name < best.Name {
			best = l
		}
	}
	if selfIn && self.Load.Sessions <= best.Load.Sessions+Slack {
		return self, nil
	}
	return best, nil
}

// Placer answers new WHIP and WHEP sessions (POST /whip/..., POST /whep/...) with a 307 to
// the node Choose picks, and passes every other request (and those it serves locally) to
// the next handler.
type Placer struct {
	// Self is this node's lease as of now (its load and limit).
	Self func() Lease
	// Leases are the other nodes' leases as last read (Presence.Leases).
	Leases func() []Observed
	// Redirect turns placement on; off, the Placer only refuses new sessions while this
	// node is at its limit.
	Redirect bool
	// Next serves what stays here.
	Next http.Handler
}

// ZoneParam is the query parameter in which a client may name its zone.
const ZoneParam = "zone"

// Place decides where a new session asked for at u (the request's path and query) goes: nil
// to serve it here, else u on the node Choose picks (the client's zone from ZoneParam), with
// PlacedParam naming self. Off (redirect false) or on a request placed already, it only
// admits: ErrNodeFull when self is full. ErrFull when no node has room.
func Place(self Lease, redirect bool, u *url.URL, leases []Observed) (*url.URL, error) {
	q := u.Query()
	if !redirect || q.Has(PlacedParam) {
		if full(self) {
			return nil, ErrNodeFull
		}
		return nil, nil
	}
	target, err := Choose(self, q.Get(ZoneParam), leases)
	if err != nil {
		return nil, err
	}
	if target.Name == self.Name {
		return nil, nil
	}
	t, err := url.Parse(target.HTTP)
	if err != nil || t.Host == "" {
		// An unreadable address: serve here rather than fail, within the limit.
		if full(self) {
			return nil, ErrFull
		}
		return nil, nil
	}
	q.Set(PlacedParam, self.Name)
	t.Path, t.RawPath, t.RawQuery = u.Path, u.RawPath, q.Encode()
	return t, nil
}

func (p *Placer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !(strings.HasPrefix(r.URL.Path, "/whip/") || strings.HasPrefix(r.URL.Path, "/whep/")) {
		p.Next.ServeHTTP(w, r)
		return
	}
	target, err := Place(p.Self(), p.Redirect, r.URL, p.Leases())
	switch {
	case errors.Is(err, ErrNodeFull):
		http.Error(w, "this node is at its session limit", http.StatusServiceUnavailable)
	case err != nil:
		w.Header().Set("Retry-After", "5")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case target == nil:
		p.Next.ServeHTTP(w, r)
	default:
		http.Redirect(w, r, target.String(), http.StatusTemporaryRedirect)
	}
}
