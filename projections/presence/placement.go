package presence

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// Placement: a WHIP or WHEP request to any node is served there or answered with a 307 to the
// node that should serve it, read from the leases (each node's zone, HTTP address, sessions
// and admission limit). Sans-IO: Choose takes the leases as read; Placer is the HTTP shell.

// ErrFull means every node that could serve the session is at its --max-sessions.
var ErrFull = errors.New("presence: every node is at its session limit")

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

func (p *Placer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !(strings.HasPrefix(r.URL.Path, "/whip/") || strings.HasPrefix(r.URL.Path, "/whep/")) {
		p.Next.ServeHTTP(w, r)
		return
	}
	self := p.Self()
	q := r.URL.Query()
	if !p.Redirect || q.Has(PlacedParam) {
		if full(self) {
			http.Error(w, "this node is at its session limit", http.StatusServiceUnavailable)
			return
		}
		p.Next.ServeHTTP(w, r)
		return
	}
	target, err := Choose(self, q.Get(ZoneParam), p.Leases())
	switch {
	case err != nil:
		w.Header().Set("Retry-After", "5")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case target.Name == self.Name:
		p.Next.ServeHTTP(w, r)
		return
	}
	u, err := url.Parse(target.HTTP)
	if err != nil {
		p.Next.ServeHTTP(w, r) // an unreadable address: serve here rather than fail
		return
	}
	q.Set(PlacedParam, self.Name)
	u.Path, u.RawQuery = r.URL.Path, q.Encode()
	http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
}
