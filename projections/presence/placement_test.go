package presence_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/projections/presence"
)

func placed(name, zone string, sessions, limit int) presence.Lease {
	return presence.Lease{Name: name, Zone: zone, HTTP: "http://" + name + ".example:8080",
		Load: presence.Load{Sessions: sessions}, MaxSessions: limit, TTL: 8 * time.Second}
}

func observed(ls ...presence.Lease) []presence.Observed {
	out := make([]presence.Observed, len(ls))
	for i, l := range ls {
		out[i] = presence.Observed{Lease: l, Age: time.Second}
	}
	return out
}

func TestChoose(t *testing.T) {
	expired := presence.Observed{Lease: placed("dead", "eu", 0, 0), Age: time.Minute}
	for _, tc := range []struct {
		name   string
		self   presence.Lease
		zone   string
		others []presence.Observed
		want   string // "" means ErrFull
	}{
		{"alone", placed("a", "eu", 50, 0), "", nil, "a"},
		{"within slack stays", placed("a", "eu", 3, 0), "", observed(placed("b", "eu", 1, 0)), "a"},
		{"least loaded", placed("a", "eu", 10, 0), "", observed(placed("b", "eu", 4, 0), placed("c", "eu", 2, 0)), "c"},
		{"same zone first", placed("a", "eu", 10, 0), "", observed(placed("b", "us", 0, 0), placed("c", "eu", 5, 0)), "c"},
		{"client's zone", placed("a", "eu", 0, 0), "us", observed(placed("b", "us", 9, 0), placed("c", "eu", 0, 0)), "b"},
		{"no node in the client's zone", placed("a", "eu", 0, 0), "ap", observed(placed("b", "us", 9, 0)), "a"},
		{"self full", placed("a", "eu", 5, 5), "", observed(placed("b", "us", 9, 0)), "b"},
		{"full nodes skipped", placed("a", "eu", 10, 0), "", observed(placed("b", "eu", 3, 3), placed("c", "eu", 6, 0)), "c"},
		{"everyone full", placed("a", "eu", 5, 5), "", observed(placed("b", "eu", 3, 3)), ""},
		{"expired and addressless skipped", placed("a", "eu", 10, 0), "",
			append(observed(presence.Lease{Name: "x", Zone: "eu", TTL: time.Hour}), expired), "a"},
		{"ties by name", placed("a", "eu", 10, 0), "", observed(placed("c", "eu", 1, 0), placed("b", "eu", 1, 0)), "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := presence.Choose(tc.self, tc.zone, tc.others)
			if tc.want == "" {
				require.ErrorIs(t, err, presence.ErrFull)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got.Name)
		})
	}
}

func TestPlacer(t *testing.T) {
	self := placed("a", "eu", 10, 12)
	others := observed(placed("b", "eu", 1, 0))
	served := 0
	p := &presence.Placer{Self: func() presence.Lease { return self }, Leases: func() []presence.Observed { return others },
		Redirect: true, Next: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { served++; w.WriteHeader(http.StatusCreated) })}
	do := func(method, target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader("v=0")))
		return rec
	}

	rec := do(http.MethodPost, "/whip/room1?x=1")
	require.Equal(t, http.StatusTemporaryRedirect, rec.Code)
	loc, err := url.Parse(rec.Header().Get("Location"))
	require.NoError(t, err)
	require.Equal(t, "b.example:8080", loc.Host)
	require.Equal(t, "/whip/room1", loc.Path)
	require.Equal(t, "a", loc.Query().Get(presence.PlacedParam))
	require.Equal(t, "1", loc.Query().Get("x"), "the query goes along")

	require.Equal(t, http.StatusCreated, do(http.MethodPost, "/whep/room1?"+presence.PlacedParam+"=c").Code,
		"a placed request is served where it lands")
	require.Equal(t, http.StatusCreated, do(http.MethodDelete, "/whip/room1/session").Code, "only new sessions move")
	require.Equal(t, http.StatusCreated, do(http.MethodGet, "/rooms/room1").Code)

	self.Load.Sessions = 12 // at its limit
	require.Equal(t, http.StatusServiceUnavailable, do(http.MethodPost, "/whep/room1?"+presence.PlacedParam+"=c").Code)
	require.Equal(t, http.StatusTemporaryRedirect, do(http.MethodPost, "/whep/room1").Code)
	others = observed(placed("b", "eu", 3, 3))
	rec = do(http.MethodPost, "/whep/room1")
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, "nobody has room")
	require.NotEmpty(t, rec.Header().Get("Retry-After"))

	p.Redirect = false
	require.Equal(t, http.StatusServiceUnavailable, do(http.MethodPost, "/whip/room1").Code, "admission holds without placement")
	self.Load.Sessions = 0
	others = observed(placed("b", "eu", 0, 0))
	self.Load.Sessions = 9
	require.Equal(t, http.StatusCreated, do(http.MethodPost, "/whip/room1").Code, "no redirects when placement is off")
	require.Equal(t, 4, served)
}

func TestPlace(t *testing.T) {
	u, err := url.Parse("/rtc?zone=us&x=1")
	require.NoError(t, err)
	self := placed("a", "eu", 0, 1)
	others := observed(placed("b", "us", 4, 0), placed("c", "eu", 0, 0))

	got, err := presence.Place(self, true, u, others)
	require.NoError(t, err)
	require.Equal(t, "http://b.example:8080/rtc?jm_placed=a&x=1&zone=us", got.String(), "the client's zone, query kept, marked")

	home, err := url.Parse("/rtc")
	require.NoError(t, err)
	got, err = presence.Place(self, true, home, others)
	require.NoError(t, err)
	require.Nil(t, got, "room here, in this node's zone")

	self.Load.Sessions = 1 // at its limit
	got, err = presence.Place(self, true, home, others)
	require.NoError(t, err)
	require.Equal(t, "c.example:8080", got.Host)

	placedHere, err := url.Parse("/rtc?jm_placed=b")
	require.NoError(t, err)
	_, err = presence.Place(self, true, placedHere, others)
	require.ErrorIs(t, err, presence.ErrNodeFull, "a placed request is never sent on")
	_, err = presence.Place(self, false, home, others)
	require.ErrorIs(t, err, presence.ErrNodeFull, "placement off: admission only")
	_, err = presence.Place(self, true, home, observed(placed("b", "us", 3, 3)))
	require.ErrorIs(t, err, presence.ErrFull, "nobody has room")

	self.Load.Sessions = 0
	got, err = presence.Place(self, false, u, others)
	require.NoError(t, err)
	require.Nil(t, got, "placement off: served here whatever the zone")
	got, err = presence.Place(self, true, u, observed(presence.Lease{Name: "b", Zone: "us", HTTP: "::bad", TTL: time.Hour}))
	require.NoError(t, err)
	require.Nil(t, got, "an unreadable address: served here")
}
