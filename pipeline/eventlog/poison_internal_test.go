package eventlog

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPoisonSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		filter, subject string
		want            bool
	}{
		{"poison.readmodels", "poison.readmodels", true},
		{"poison.readmodels", "poison.other", false},
		{"poison.readmodels", "poison.readmodels.x", false},
		{"poison.>", "poison.readmodels", true},
		{"poison.>", "poison", false},
		{"poison.*", "poison.a", true},
		{"poison.*", "poison.a.b", false},
	} {
		require.Equal(t, c.want, subjectMatches(c.filter, c.subject), "%s ~ %s", c.filter, c.subject)
	}
}
