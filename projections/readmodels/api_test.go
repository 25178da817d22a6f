package readmodels

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseAuditQuery(t *testing.T) {
	for _, tc := range []struct {
		query string
		err   string
		limit int
		from  time.Time
	}{
		{query: "identity=alice", limit: 1000},
		{query: "identity=alice&limit=5&from=2026-11-03T14:05:00Z", limit: 5, from: time.Date(2026, 11, 3, 14, 5, 0, 0, time.UTC)},
		{query: "", err: "identity is required"},
		{query: "identity=alice&bogus=1", err: `unknown parameter "bogus"`},
		{query: "identity=alice&from=yesterday", err: "from:"},
		{query: "identity=alice&to=5m", err: "to:"},
		{query: "identity=alice&limit=0", err: "limit:"},
		{query: "identity=alice&limit=100001", err: "limit:"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			v, err := url.ParseQuery(tc.query)
			require.NoError(t, err)
			q, err := ParseAuditQuery(v.Get, v)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "alice", q.Identity)
			require.Equal(t, tc.limit, q.Limit)
			require.True(t, tc.from.Equal(q.From), "from %s", q.From)
		})
	}
}
