package clusterapi

import (
	"encoding/json"
	"io/fs"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/natsnode"
	"github.com/jetmedia/jetmedia/projections/logtools"
	"github.com/jetmedia/jetmedia/projections/presence"
)

// keysOf is the set of JSON keys v marshals to (v with every omitempty field set).
func keysOf(t *testing.T, v any) map[string]bool {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m))
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// TestPageReadsTheReplies: each field the cluster page renders from GET /v1/cluster and from
// a forget's answer is one the Go types put in the JSON, and the page's script reads it; a
// renamed field fails here rather than leaving a column of dashes. Each element the script
// looks up by id is in the page.
func TestPageReadsTheReplies(t *testing.T) {
	script, err := fs.ReadFile(webFS, "web/cluster.js")
	require.NoError(t, err)
	page, err := fs.ReadFile(webFS, "web/cluster.html")
	require.NoError(t, err)

	view := View{
		ClusterView: logtools.ClusterView{
			Edges:       []string{"edge-e"},
			Forgotten:   []presence.Forgotten{{}},
			EdgeSources: []logtools.EdgeSourceView{{}},
		},
		Links: []natsnode.Link{},
	}
	for _, c := range []struct {
		what   string
		keys   map[string]bool
		fields []string
	}{
		{"GET /v1/cluster", keysOf(t, view), []string{"node", "nodes", "streams", "links", "edges", "edge_sources", "forgotten"}},
		{"an edge source", keysOf(t, logtools.EdgeSourceView{Node: "e", Error: "x"}), []string{"domain", "node", "active", "lag", "error"}},
		{"a forgotten edge", keysOf(t, presence.Forgotten{At: time.Now()}), []string{"node", "domain", "by", "at"}},
		{"a forget's answer", keysOf(t, presence.ForgetResult{}),
			[]string{"node", "domain", "by", "at", "already", "lease", "source_removed", "ended", "rooms", "remaining"}},
	} {
		for _, f := range c.fields {
			require.True(t, c.keys[f], "%s has no field %q (it has %v)", c.what, f, c.keys)
			reads := regexp.MustCompile(`\.` + regexp.QuoteMeta(f) + `\b`).Match(script)
			require.True(t, reads, "cluster.js does not read %s's %q", c.what, f)
		}
	}
	require.True(t, regexp.MustCompile(`/v1/cluster/nodes/\$\{encodeURIComponent\(node\)\}/forget`).Match(script),
		"cluster.js posts the forget")

	ids := regexp.MustCompile(`\$\("([a-z-]+)"\)`).FindAllStringSubmatch(string(script), -1)
	require.NotEmpty(t, ids)
	for _, m := range ids {
		require.True(t, regexp.MustCompile(`id="`+m[1]+`"`).Match(page), "cluster.js looks up #%s, which cluster.html lacks", m[1])
	}
}
