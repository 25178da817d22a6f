package historyapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
	"github.com/jetmedia/jetmedia/pipeline/eventlog"
	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/projections"
	"github.com/jetmedia/jetmedia/projections/historyapi"
	"github.com/jetmedia/jetmedia/projections/roomsapi"
	"github.com/jetmedia/jetmedia/tests/loggen"
)

var genStart = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

// historyServer serves the history API over a real JetStream holding one generated room of n
// events (and a second room, so that the stream interleaves nothing into the first but has
// other subjects). Every request is authorized: the admin check is the node's (app's tests).
func historyServer(t *testing.T, n int) (string, []events.Envelope) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := natsnode.StartServer(ctx, natsnode.ServerConfig{Name: "history", StoreDir: t.TempDir(), JetStream: true})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("history-test")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, eventlog.Declare(ctx, js, eventlog.StorageConfig{}))
	evs := loggen.Events("hist", n, 9, genStart, time.Second)
	i := 0
	require.NoError(t, loggen.Write(ctx, js, n, func() events.Envelope { i++; return evs[i-1] }))
	for i := range evs {
		evs[i].Seq = uint64(i + 1)
	}
	require.NoError(t, loggen.Write(ctx, js, 5, loggen.New("other", 1, genStart, time.Second).Next))
	mux := http.NewServeMux()
	historyapi.API{JS: js, Heads: eventlog.NewAppender(js, "history"), WriteTimeout: time.Minute,
		Authorize: func(http.ResponseWriter, *http.Request, string) bool { return true }}.Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs.URL, evs
}

func get(t *testing.T, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

// page reads one events page: the events' ids and the next cursor ("" when none).
func page(t *testing.T, base, query string) (ids []string, raw []string, next string) {
	t.Helper()
	code, h, body := get(t, base+"/v1/rooms/hist/events?"+query)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "application/x-ndjson", h.Get("Content-Type"))
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var probe struct {
			ID   string `json:"id"`
			Next string `json:"next"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &probe), line)
		if probe.Next != "" {
			require.Empty(t, next, "one cursor, last")
			next = probe.Next
			continue
		}
		require.Empty(t, next, "the cursor is the last line")
		e, err := events.Decode([]byte(line))
		require.NoError(t, err)
		ids = append(ids, e.ID)
		raw = append(raw, line)
	}
	return ids, raw, next
}

func idsOf(evs []events.Envelope) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func TestEventsAPI(t *testing.T) {
	base, evs := historyServer(t, 250)

	// The whole room in one page, each line as stored: the chain holds over the lines.
	ids, raw, next := page(t, base, "limit=10000")
	require.Equal(t, idsOf(evs), ids)
	require.Empty(t, next)
	c := &events.Chain{}
	for i, line := range raw {
		require.NoError(t, c.Add(uint64(i+1), []byte(line)))
	}

	// Paging with the cursor gives the same events, each once.
	var paged []string
	cursor := ""
	pages := 0
	for {
		q := "limit=100"
		if cursor != "" {
			q += "&from=" + cursor
		}
		ids, _, next := page(t, base, q)
		paged = append(paged, ids...)
		pages++
		if next == "" {
			break
		}
		cursor = next
	}
	require.Equal(t, idsOf(evs), paged)
	require.Equal(t, 3, pages)

	// Sequences bound inclusively.
	ids, _, _ = page(t, base, "from=10&to=19")
	require.Equal(t, idsOf(evs[9:19]), ids)
	ids, _, next = page(t, base, "from=10&to=19&limit=10")
	require.Len(t, ids, 10)
	require.Empty(t, next, "the page reached to")
	ids, _, next = page(t, base, "from=10&to=19&limit=5")
	require.Equal(t, idsOf(evs[9:14]), ids)
	require.Equal(t, "15", next)

	// Times: from skips events stamped before it, to stops after it.
	from, to := evs[40].Time, evs[80].Time
	ids, _, _ = page(t, base, "from="+url.QueryEscape(from.Format(time.RFC3339Nano))+"&to="+url.QueryEscape(to.Format(time.RFC3339Nano)))
	var want []string
	for _, e := range evs {
		if !e.Time.Before(from) && !e.Time.After(to) {
			want = append(want, e.ID)
		}
	}
	require.Equal(t, want, ids)

	// Types, exact or any version.
	ids, _, _ = page(t, base, "type=peer.joined.v1,peer.left")
	want = nil
	for _, e := range evs {
		if e.Type == events.TypePeerJoined || e.Type == events.TypePeerLeft {
			want = append(want, e.ID)
		}
	}
	require.NotEmpty(t, want)
	require.Equal(t, want, ids)

	// Past the head: an empty page.
	ids, _, next = page(t, base, "from=100000")
	require.Empty(t, ids)
	require.Empty(t, next)
}

func TestStateAPI(t *testing.T) {
	base, evs := historyServer(t, 200)
	for _, k := range []int{0, 3, 99, 199} {
		at := evs[k].Time
		code, _, body := get(t, base+"/v1/rooms/hist/state?at="+url.QueryEscape(at.Format(time.RFC3339Nano)))
		require.Equal(t, http.StatusOK, code, body)
		want, err := projections.FoldUntil("hist", evs, at)
		require.NoError(t, err)
		wantJSON, err := json.Marshal(roomsapi.ViewOf(want))
		require.NoError(t, err)
		require.JSONEq(t, string(wantJSON), body, "state at event %d", k)
	}
	code, _, body := get(t, base+"/v1/rooms/hist/state")
	require.Equal(t, http.StatusOK, code)
	var now roomsapi.RoomView
	require.NoError(t, json.Unmarshal([]byte(body), &now))
	require.Equal(t, uint64(len(evs)), now.LastSeq, "no at: now")
}

func TestHistoryAPIErrors(t *testing.T) {
	base, _ := historyServer(t, 20)
	cases := []struct {
		path string
		code int
		msg  string
	}{
		{"/v1/rooms/nobody/events", http.StatusNotFound, "has no events"},
		{"/v1/rooms/nobody/state", http.StatusNotFound, "has no events"},
		{"/v1/rooms/hist/state?at=2020-01-01T00:00:00Z", http.StatusNotFound, "no events at or before 2020-01-01T00:00:00Z"},
		{"/v1/rooms/bad%20room/events", http.StatusBadRequest, "not a valid id"},
		{"/v1/rooms/bad%20room/state", http.StatusBadRequest, "not a valid id"},
		{"/v1/rooms/hist/events?from=yesterday", http.StatusBadRequest, "neither a stream sequence nor an RFC 3339 time"},
		{"/v1/rooms/hist/events?to=0", http.StatusBadRequest, "whole number from 1"},
		{"/v1/rooms/hist/events?from=9&to=3", http.StatusBadRequest, "from=9 is after to=3"},
		{"/v1/rooms/hist/events?from=2026-11-04T00:00:00Z&to=2026-11-03T00:00:00Z", http.StatusBadRequest, "from is after to"},
		{"/v1/rooms/hist/events?limit=0", http.StatusBadRequest, "limit"},
		{"/v1/rooms/hist/events?limit=10001", http.StatusBadRequest, "from 1 to 10000"},
		{"/v1/rooms/hist/events?limit=x", http.StatusBadRequest, "limit"},
		{"/v1/rooms/hist/events?type=Peer.Joined", http.StatusBadRequest, "event types"},
		{"/v1/rooms/hist/events?type=", http.StatusOK, ""},
		{"/v1/rooms/hist/events?form=1", http.StatusBadRequest, `unknown parameter "form"`},
		{"/v1/rooms/hist/events?from=1&from=2", http.StatusBadRequest, "from given 2 times"},
		{"/v1/rooms/hist/state?at=5m", http.StatusBadRequest, "not an RFC 3339 time"},
		{"/v1/rooms/hist/state?when=x", http.StatusBadRequest, `unknown parameter "when"`},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			code, h, body := get(t, base+c.path)
			require.Equal(t, c.code, code, body)
			if c.code != http.StatusOK {
				require.Contains(t, h.Get("Content-Type"), "text/plain")
				require.Contains(t, body, c.msg)
			}
		})
	}
}
