package sip

// G.711 (ITU-T G.711): 8 kHz telephone audio, one byte a sample, companded with the µ-law
// (PCMU, North America and Japan) or A-law (PCMA, elsewhere) curve. Both are small segmented
// logarithms, computed here directly: no tables to keep, and a few ns a sample (see
// BenchmarkG711).

const (
	ulawBias = 0x84 // added before finding the segment, so every segment starts at a power of two
	ulawClip = 32635
)

// MulawEncode compands one linear sample to µ-law.
func MulawEncode(s int16) byte {
	x, sign := int(s), 0
	if x < 0 {
		x, sign = -x, 0x80
	}
	x = min(x, ulawClip) + ulawBias
	exp := 7
	for mask := 0x4000; x&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (x >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// MulawDecode expands one µ-law byte to a linear sample.
func MulawDecode(u byte) int16 {
	u = ^u
	exp := int(u>>4) & 7
	x := ((int(u&0x0f) << 3) + ulawBias) << exp
	x -= ulawBias
	if u&0x80 != 0 {
		return int16(-x)
	}
	return int16(x)
}

// AlawEncode compands one linear sample to A-law.
func AlawEncode(s int16) byte {
	x := int(s) >> 3 // A-law works on 13 bits
	mask := byte(0xd5)
	if x < 0 {
		mask, x = 0x55, -x-1
	}
	seg := 0
	for lim := 0x1f; x > lim && seg < 8; lim = lim<<1 | 1 {
		seg++
	}
	if seg >= 8 {
		return 0x7f ^ mask
	}
	a := byte(seg << 4)
	if seg < 2 {
		a |= byte(x>>1) & 0x0f
	} else {
		a |= byte(x>>seg) & 0x0f
	}
	return a ^ mask
}

// AlawDecode expands one A-law byte to a linear sample.
func AlawDecode(a byte) int16 {
	a ^= 0x55
	t := int(a&0x0f)<<4 + 8
	seg := int(a&0x70) >> 4
	if seg > 0 {
		t = (t + 0x100) << (seg - 1)
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}

// Law is a G.711 variant, by its RTP static payload type.
type Law uint8

// The two G.711 laws and their static RTP payload types (RFC 3551).
const (
	PCMU Law = 0
	PCMA Law = 8
)

func (l Law) String() string {
	if l == PCMA {
		return "PCMA"
	}
	return "PCMU"
}

// Encode compands pcm into dst (len(dst) >= len(pcm)) and returns the bytes written.
func (l Law) Encode(dst []byte, pcm []int16) []byte {
	dst = dst[:len(pcm)]
	if l == PCMA {
		for i, s := range pcm {
			dst[i] = AlawEncode(s)
		}
		return dst
	}
	for i, s := range pcm {
		dst[i] = MulawEncode(s)
	}
	return dst
}

// Decode expands payload into dst (len(dst) >= len(payload)) and returns the samples written.
func (l Law) Decode(dst []int16, payload []byte) []int16 {
	dst = dst[:len(payload)]
	if l == PCMA {
		for i, b := range payload {
			dst[i] = AlawDecode(b)
		}
		return dst
	}
	for i, b := range payload {
		dst[i] = MulawDecode(b)
	}
	return dst
}
