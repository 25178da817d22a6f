package events_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/events"
)

// chained returns n stored events of one room (seq 1..n) linked as the Appender links them.
func chained(t testing.TB, n int) [][]byte {
	t.Helper()
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	out := make([][]byte, 0, n)
	prev := ""
	for i := range n {
		e, err := events.New(events.Meta{Room: "r1", Actor: "p1", Node: "n1", Time: at.Add(time.Duration(i) * time.Second)},
			events.PeerJoined{Peer: fmt.Sprintf("p%d", i), Transport: events.TransportWHIP, Role: "publisher", Node: "n1"})
		require.NoError(t, err)
		e.PrevHash = prev
		raw, err := events.Encode(e)
		require.NoError(t, err)
		prev = events.Hash(raw)
		out = append(out, raw)
	}
	return out
}

func verify(t testing.TB, raws [][]byte, seqs []uint64) *events.Chain {
	t.Helper()
	c := &events.Chain{}
	for i, raw := range raws {
		seq := uint64(i + 1)
		if seqs != nil {
			seq = seqs[i]
		}
		if err := c.Add(seq, raw); err != nil {
			require.ErrorIs(t, err, events.ErrChainBroken)
			var b *events.ChainBreak
			require.ErrorAs(t, err, &b)
			require.Same(t, c.Break, b)
		}
	}
	return c
}

func TestHashIsSHA256OfStoredBytes(t *testing.T) {
	raw := []byte(`{"id":"x"}`)
	sum := sha256.Sum256(raw)
	require.Equal(t, hex.EncodeToString(sum[:]), events.Hash(raw))
	require.Len(t, events.Hash(nil), 64)
}

func TestPrevHashOnTheWire(t *testing.T) {
	raws := chained(t, 2)
	require.NotContains(t, string(raws[0]), "prevhash", "a room's first event carries no prevhash")
	// The canonical form: struct order, prevhash right before data.
	require.Contains(t, string(raws[1]), `"node":"n1","prevhash":"`+events.Hash(raws[0])+`","data":{`)
	e, err := events.Decode(raws[1])
	require.NoError(t, err)
	require.Equal(t, events.Hash(raws[0]), e.PrevHash)
	again, err := events.Encode(e)
	require.NoError(t, err)
	require.Equal(t, raws[1], again, "decode then encode reproduces the stored bytes")
}

func TestChain(t *testing.T) {
	raws := chained(t, 6)
	replace := func(i int, raw []byte) [][]byte {
		out := append([][]byte(nil), raws...)
		out[i] = raw
		return out
	}
	cases := []struct {
		name string
		raws [][]byte
		seqs []uint64
		// breakAt is the sequence of the first broken link, 0 for intact.
		breakAt uint64
	}{
		{name: "intact", raws: raws},
		{name: "gaps in sequence are other rooms' events", raws: raws, seqs: []uint64{1, 5, 9, 10, 40, 41}},
		{name: "altered data", raws: replace(2, bytes.Replace(raws[2], []byte(`"p2"`), []byte(`"px"`), 1)), breakAt: 4},
		{name: "altered first event", raws: replace(0, bytes.Replace(raws[0], []byte(`"p1"`), []byte(`"p9"`), 1)), breakAt: 2},
		{name: "altered head is not evident", raws: replace(5, bytes.Replace(raws[5], []byte(`"p5"`), []byte(`"px"`), 1))},
		{name: "removed from the middle", raws: append(append([][]byte(nil), raws[:3]...), raws[4:]...), breakAt: 4},
		{name: "inserted", raws: append(append(append([][]byte(nil), raws[:3]...), chained(t, 1)[0]), raws[3:]...), breakAt: 4},
		{name: "prevhash stripped", raws: replace(3, stripPrevHash(t, raws[3])), breakAt: 4},
		{name: "swapped", raws: [][]byte{raws[0], raws[2], raws[1]}, breakAt: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := verify(t, c.raws, c.seqs)
			if c.breakAt == 0 {
				require.Nil(t, ch.Break)
				require.Equal(t, len(c.raws), ch.Events)
				require.Equal(t, events.Hash(c.raws[len(c.raws)-1]), ch.Head)
				return
			}
			require.NotNil(t, ch.Break)
			require.Equal(t, c.breakAt, ch.Break.Seq)
			require.Equal(t, int(c.breakAt-1), ch.Events, "events before the break were checked")
			require.Contains(t, ch.Break.Error(), fmt.Sprintf("chain broken at seq %d", c.breakAt))
		})
	}
}

func stripPrevHash(t testing.TB, raw []byte) []byte {
	e, err := events.Decode(raw)
	require.NoError(t, err)
	e.PrevHash = ""
	out, err := events.Encode(e)
	require.NoError(t, err)
	return out
}

func TestChainLegacyAndTruncated(t *testing.T) {
	raws := chained(t, 4)
	legacy := [][]byte{stripPrevHash(t, raws[0]), stripPrevHash(t, raws[1]), stripPrevHash(t, raws[2])}
	// The first chained event after an upgrade links to the last legacy one.
	e, err := events.Decode(raws[3])
	require.NoError(t, err)
	e.PrevHash = events.Hash(legacy[2])
	next, err := events.Encode(e)
	require.NoError(t, err)

	c := verify(t, append(legacy, next), nil)
	require.Nil(t, c.Break)
	require.Equal(t, 2, c.Legacy)
	require.False(t, c.Truncated)

	// Once the chain has begun, an event without prevhash is a break.
	c = verify(t, append(append(legacy, next), legacy[0]), nil)
	require.NotNil(t, c.Break)
	require.Equal(t, uint64(5), c.Break.Seq)
	require.Equal(t, "", c.Break.Got)

	// Retention dropped the room's first events: checked from the first one kept.
	c = verify(t, raws[2:], []uint64{30, 31})
	require.Nil(t, c.Break)
	require.True(t, c.Truncated)
	require.Equal(t, uint64(30), c.FirstSeq)
}

func TestChainRejectsNonJSON(t *testing.T) {
	c := &events.Chain{}
	err := c.Add(1, []byte("not json"))
	require.ErrorIs(t, err, events.ErrInvalid)
	require.False(t, errors.Is(err, events.ErrChainBroken))
}

// BenchmarkChainAdd is the CPU cost of checking one stored event (~400 bytes).
func BenchmarkChainAdd(b *testing.B) {
	raws := chained(b, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(raws[1])))
	c := &events.Chain{}
	for i := 0; b.Loop(); i++ {
		if i%len(raws) == 0 {
			c = &events.Chain{}
		}
		if err := c.Add(uint64(i%len(raws)+1), raws[i%len(raws)]); err != nil {
			b.Fatal(err)
		}
	}
}
