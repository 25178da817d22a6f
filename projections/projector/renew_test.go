package projector

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A renewal whose answer was lost (it timed out on a loaded server) but which was stored: the
// holder's next renewal, at the revision it knew, fails, yet the lease is still its own. It
// goes on leading with the lease's revision, rather than stopping the projection and taking
// the lease again at once (which left the old runner folding while the new one started: issue
// 13's kill tests showed that every few seconds under load).
func TestStoredRenewalKeepsTheLead(t *testing.T) {
	kv := bucket(t)
	ctx := t.Context()
	l := &leaders{}
	a := run(t, kv, "a", l)
	require.Eventually(t, a.e.Leading, 10*time.Second, 5*time.Millisecond)
	for range 3 {
		e, err := kv.Get(ctx, KeyRooms)
		require.NoError(t, err)
		held := decodeRecord(e.Value())
		require.Equal(t, a.e.process, held.Process)
		held.Renewed = time.Now().UTC()
		b, err := json.Marshal(held)
		require.NoError(t, err)
		_, err = kv.Update(ctx, KeyRooms, b, e.Revision()) // the renewal the holder never heard of
		require.NoError(t, err)
		time.Sleep(3 * fast.Renew)
	}
	require.True(t, a.e.Leading())
	require.Equal(t, []string{"a"}, l.started(), "the projection was never stopped and started again")
	require.Equal(t, int64(1), a.e.Terms())
}
