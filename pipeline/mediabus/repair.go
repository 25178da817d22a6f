package mediabus

import (
	"encoding/binary"
	"runtime"
	"sync"

	"github.com/nats-io/nats.go"
)

// Loss between nodes. Core NATS drops messages only when a subscriber falls behind its
// pending limit or a server cuts a slow consumer, but then every viewer of the track on the
// far node loses the packet at once, and their NACKs reach only that node's cache, which
// never had it. So a node that sees a gap in a track's sequence numbers from another node
// asks the publisher's node for the missing packets: an RTCP NACK published on the track's
// repair subject (rp.<room>.<track>.<layer>) with a reply subject of its own; the
// publisher's node answers from a small cache of what it published to NATS, one message
// per packet, to that reply subject only.

// RepairPrefix is the subject root of repair requests.
const RepairPrefix = "rp"

// RepairSubject carries NACKs toward the node that publishes one track layer:
// rp.<room>.<track>.<layer>.
func RepairSubject(room, track, layer string) string {
	return RepairPrefix + "." + room + "." + track + "." + layer
}

// repairSlots is how many packets a publishing node keeps per track layer for other nodes'
// repairs: about half a second of 2.5 Mbit/s video, longer than a NACK takes to come back
// between nodes of a region. The cache exists only for layers some other node wants.
const repairSlots = 256

// maxGap is the largest run of missing packets a subscription asks for at once; a longer
// gap (a publisher's restart, a layer switch upstream) is not loss to repair.
const maxGap = 64

const (
	rtpHeader = 12
	maxRTP    = 1500
)

// repairCache is a publishing node's copy of the packets it put on NATS, by sequence number.
type repairCache struct {
	mu   sync.Mutex
	n    [repairSlots]uint16
	seq  [repairSlots]uint16
	ssrc [repairSlots]uint32
	buf  [repairSlots][maxRTP]byte
}

func (c *repairCache) put(pkt []byte) {
	if len(pkt) < rtpHeader || len(pkt) > maxRTP || pkt[0]>>6 != 2 {
		return
	}
	seq := binary.BigEndian.Uint16(pkt[2:4])
	i := seq % repairSlots
	c.mu.Lock()
	c.n[i] = uint16(copy(c.buf[i][:], pkt))
	c.seq[i], c.ssrc[i] = seq, binary.BigEndian.Uint32(pkt[8:12])
	c.mu.Unlock()
}

// remember keeps pkt for other nodes' repairs. The cache and the subscription to the
// layer's repair subject are made the first time the sender publishes to NATS (another
// node wants the layer), and the subscription ends when the sender is collected.
func (s *TrackSender) remember(pkt []byte) {
	c := s.repair.Load()
	if c == nil {
		c = s.startRepair()
		if c == nil {
			return
		}
	}
	c.put(pkt)
}

func (s *TrackSender) startRepair() *repairCache {
	s.repairOnce.Do(func() {
		c := new(repairCache)
		bus, subj := s.bus, s.subject
		sub, err := bus.rtp.Subscribe(RepairPrefix+subj[len(MediaPrefix):], func(m *nats.Msg) {
			bus.answer(c, m)
		})
		if err != nil {
			return // no repairs for this layer; media still flows
		}
		runtime.AddCleanup(s, func(sub *nats.Subscription) { _ = sub.Unsubscribe() }, sub)
		s.repair.Store(c)
	})
	return s.repair.Load()
}

// answer sends the packets a NACK asks for that c still holds to the request's reply
// subject.
func (b *MediaBus) answer(c *repairCache, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	b.repairRequests.Add(1)
	ssrc, seqs := parseNACK(m.Data)
	var buf [maxRTP]byte
	for _, seq := range seqs {
		i := seq % repairSlots
		c.mu.Lock()
		n := 0
		if c.n[i] > 0 && c.seq[i] == seq && c.ssrc[i] == ssrc {
			n = copy(buf[:], c.buf[i][:c.n[i]])
		}
		c.mu.Unlock()
		if n > 0 && b.rtp.Publish(m.Reply, buf[:n]) == nil {
			b.repaired.Add(1)
		}
	}
}

// gapWatch follows the sequence numbers of one subscription's packets from NATS.
type gapWatch struct {
	started bool
	ssrc    uint32
	last    uint16
}

// missing returns the sequence numbers skipped before pkt (nil when none, or for a gap too
// long to be loss), and notes pkt as the newest.
func (g *gapWatch) missing(pkt []byte) (ssrc uint32, from uint16, n int) {
	if len(pkt) < rtpHeader || pkt[0]>>6 != 2 {
		return 0, 0, 0
	}
	seq, src := binary.BigEndian.Uint16(pkt[2:4]), binary.BigEndian.Uint32(pkt[8:12])
	if !g.started || src != g.ssrc {
		g.started, g.ssrc, g.last = true, src, seq
		return 0, 0, 0
	}
	d := int16(seq - g.last)
	if d <= 0 {
		return 0, 0, 0 // late or repaired: not newer
	}
	g.last = seq
	if d == 1 || int(d) > maxGap+1 {
		return 0, 0, 0
	}
	return src, seq - uint16(d) + 1, int(d) - 1
}

// requestRepair asks the publisher's node for n packets from from on, answers to inbox.
func (b *MediaBus) requestRepair(subject, inbox string, ssrc uint32, from uint16, n int) {
	b.repairsAsked.Add(uint64(n))
	_ = b.rtp.PublishMsg(&nats.Msg{Subject: RepairPrefix + subject[len(MediaPrefix):], Reply: inbox, Data: nackOf(ssrc, from, n)})
}

// nackOf is an RTCP generic NACK (RFC 4585 6.2.1) for n packets from from on.
func nackOf(ssrc uint32, from uint16, n int) []byte {
	pairs := (n + 16) / 17
	b := make([]byte, 12+4*pairs)
	b[0], b[1] = 0x80|1, 205 // version 2, FMT 1: generic NACK; RTPFB
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)/4-1))
	binary.BigEndian.PutUint32(b[8:12], ssrc)
	for p := range pairs {
		pid := from + uint16(17*p)
		var mask uint16
		for k := 1; k <= 16 && 17*p+k < n; k++ {
			mask |= 1 << (k - 1)
		}
		binary.BigEndian.PutUint16(b[12+4*p:], pid)
		binary.BigEndian.PutUint16(b[14+4*p:], mask)
	}
	return b
}

// parseNACK reads the media SSRC and the sequence numbers of a generic NACK (nil for
// anything else, or more than maxGap numbers).
func parseNACK(b []byte) (uint32, []uint16) {
	if len(b) < 16 || b[0]>>6 != 2 || b[0]&0x1f != 1 || b[1] != 205 {
		return 0, nil
	}
	n := 4 * (int(binary.BigEndian.Uint16(b[2:4])) + 1)
	if n > len(b) {
		return 0, nil
	}
	var seqs []uint16
	for off := 12; off+4 <= n && len(seqs) < maxGap; off += 4 {
		pid, mask := binary.BigEndian.Uint16(b[off:]), binary.BigEndian.Uint16(b[off+2:])
		seqs = append(seqs, pid)
		for k := range 16 {
			if mask&(1<<k) != 0 {
				seqs = append(seqs, pid+uint16(k)+1)
			}
		}
	}
	return binary.BigEndian.Uint32(b[8:12]), seqs
}
