package loadgen

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const stagesBefore = `# TYPE jetmedia_forward_stage_seconds histogram
jetmedia_forward_stage_seconds_bucket{stage="queue",le="1e-06"} 0
jetmedia_forward_stage_seconds_bucket{stage="queue",le="2e-06"} 10
jetmedia_forward_stage_seconds_bucket{stage="queue",le="0.001"} 10
jetmedia_forward_stage_seconds_bucket{stage="queue",le="+Inf"} 10
jetmedia_forward_stage_seconds_sum{stage="queue"} 0.00001
jetmedia_forward_stage_seconds_count{stage="queue"} 10
`

const stagesAfter = `# TYPE jetmedia_forward_stage_seconds histogram
jetmedia_forward_stage_seconds_bucket{stage="queue",le="1e-06"} 0
jetmedia_forward_stage_seconds_bucket{stage="queue",le="2e-06"} 10
jetmedia_forward_stage_seconds_bucket{stage="queue",le="0.001"} 109
jetmedia_forward_stage_seconds_bucket{stage="queue",le="+Inf"} 110
jetmedia_forward_stage_seconds_sum{stage="queue"} 0.5
jetmedia_forward_stage_seconds_count{stage="queue"} 110
`

// The hold's quantiles come from the difference of two scrapes: what happened before the
// hold (the joins) does not count.
func TestStageDelta(t *testing.T) {
	before, err := parseStages(strings.NewReader(stagesBefore))
	require.NoError(t, err)
	after, err := parseStages(strings.NewReader(stagesAfter))
	require.NoError(t, err)
	d := stageDelta(before, after)
	require.Equal(t, StageQuantiles{Count: 100, P50: 1, P99: 1}, d["queue"])
	after["queue"].cum[2] = 108 // two of the hold's 100 beyond the last bound
	require.Equal(t, -1.0, stageDelta(before, after)["queue"].P99)

	none, err := parseStages(strings.NewReader("# TYPE other counter\nother 1\n"))
	require.NoError(t, err)
	require.Nil(t, stageDelta(before, none), "a server without the histogram")
	_, err = parseStages(strings.NewReader("not {prometheus"))
	require.Error(t, err)
}
