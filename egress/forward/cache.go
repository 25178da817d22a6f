package forward

import "encoding/binary"

// CacheSize is the number of packets kept per track: about 1 s of 2.5 Mbit/s video, enough for
// NACKs that arrive within a round trip.
const CacheSize = 512

const maxPacket = 1500

// Cache keeps the most recent packets of one source, by sequence number, for retransmission.
// One Cache serves every viewer of a track on a node. It is not safe for concurrent use; the
// Fanout serialises access. Its memory is allocated once.
type Cache struct {
	buf  [CacheSize][maxPacket]byte
	n    [CacheSize]uint16
	seq  [CacheSize]uint16
	ssrc [CacheSize]uint32
}

// Put stores a copy of pkt (an RTP packet as received from the source).
func (c *Cache) Put(pkt []byte) {
	if len(pkt) < MinHeader || len(pkt) > maxPacket {
		return
	}
	seq := binary.BigEndian.Uint16(pkt[2:4])
	i := seq % CacheSize
	c.n[i] = uint16(copy(c.buf[i][:], pkt))
	c.seq[i] = seq
	c.ssrc[i] = binary.BigEndian.Uint32(pkt[8:12])
}

// Get copies the packet with sequence seq from source ssrc into dst and returns its length, or
// 0 when it is no longer (or never was) cached.
func (c *Cache) Get(ssrc uint32, seq uint16, dst []byte) int {
	i := seq % CacheSize
	if c.n[i] == 0 || c.seq[i] != seq || c.ssrc[i] != ssrc {
		return 0
	}
	return copy(dst, c.buf[i][:c.n[i]])
}
