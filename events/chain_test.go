package events_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
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

// twoWriters returns a room's events as the region's log stores them when writers (one letter
// each, in log order) append: 'e' is an edge, chained in its own log to its own previous
// event (its first without prevhash) and copied into the region's; any other letter is a
// region node, chained to the region log's previous event (edge events included).
func twoWriters(t testing.TB, writers string) [][]byte {
	t.Helper()
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var out [][]byte
	prev, edgePrev := "", ""
	for i, w := range writers {
		node := "region-" + string(w)
		if w == 'e' {
			node = "edge"
		}
		e, err := events.New(events.Meta{Room: "r1", Actor: "p1", Node: node, Time: at.Add(time.Duration(i) * time.Second)},
			events.PeerJoined{Peer: fmt.Sprintf("p%d", i), Transport: events.TransportWHIP, Role: "publisher", Node: node})
		require.NoError(t, err)
		e.PrevHash = prev
		if w == 'e' {
			e.PrevHash = edgePrev
		}
		raw, err := events.Encode(e)
		require.NoError(t, err)
		prev = events.Hash(raw)
		if w == 'e' {
			edgePrev = prev
		}
		out = append(out, raw)
	}
	return out
}

// verifyCopied checks raws as the region's log holds them: the events of writers' 'e' copied
// from the edge's log (AddFrom with the edge's identity), the others appended to it.
func verifyCopied(t testing.TB, raws [][]byte, writers string, seqs []uint64) *events.Chain {
	t.Helper()
	c := &events.Chain{}
	for i, raw := range raws {
		seq := uint64(i + 1)
		if seqs != nil {
			seq = seqs[i]
		}
		from := ""
		if writers[i] == 'e' {
			from = "EVENTS:edge-1"
		}
		if err := c.AddFrom(seq, raw, from); err != nil {
			require.ErrorIs(t, err, events.ErrChainBroken)
		}
	}
	return c
}

// TestChainTwoWriters: an edge's chain interleaved with the region's verifies, each copied
// event linked to the room's previous one or to its writer's; the events nothing links to are
// listed; tampering still breaks it, and so does an event appended to the log (not copied)
// that links the edge's way.
func TestChainTwoWriters(t *testing.T) {
	// A room of the region only, served by several nodes: one chain, nothing unlinked.
	c := verifyCopied(t, twoWriters(t, "abcabca"), "abcabca", nil)
	require.Nil(t, c.Break)
	require.Zero(t, c.WriterLinks+c.WriterStarts)
	require.Empty(t, c.Unlinked())

	// Region first (a, b), then an edge joins (its first event has no prevhash) and both go on.
	const writers = "abeaeebe"
	raws := twoWriters(t, writers)
	c = verifyCopied(t, raws, writers, nil)
	require.Nil(t, c.Break)
	require.Equal(t, 8, c.Events)
	require.Equal(t, 1, c.WriterStarts, "the edge's first event")
	// seq 5 (e) follows seq 4 (a) but links to seq 3 (e); seq 6 (e) links to seq 5, the head;
	// seq 8 (e) links to seq 6 past seq 7 (b, which linked to seq 6).
	require.Equal(t, 2, c.WriterLinks)
	// seq 2 (b) is followed by the edge's start; seq 4 (a) by the edge's seq 5; seq 7 (b) by
	// the edge's seq 8: nothing links to them.
	require.Equal(t, []uint64{2, 4, 7}, c.Unlinked())

	// The same events appended to the log itself (none copied): the edge's start breaks it,
	// as an event written past the appender does.
	c = verifyCopied(t, raws, "abxaxxbx", nil)
	require.NotNil(t, c.Break)
	require.EqualValues(t, 3, c.Break.Seq)

	// Tampering: an altered edge event breaks the next edge event's link; a removed one the
	// link after it.
	altered := slices.Clone(raws)
	altered[4] = bytes.Replace(altered[4], []byte(`"p4"`), []byte(`"pX"`), 1)
	c = verifyCopied(t, altered, writers, nil)
	require.NotNil(t, c.Break)
	require.EqualValues(t, 6, c.Break.Seq)
	removed := append(slices.Clone(raws[:4]), raws[5:]...)
	c = verifyCopied(t, removed, "abeaebe", []uint64{1, 2, 3, 4, 6, 7, 8})
	require.NotNil(t, c.Break)
	require.EqualValues(t, 6, c.Break.Seq)
}
