package sip

import (
	"encoding/binary"
	"errors"
)

// TelephoneEvent is one RFC 4733 telephone-event payload (§2.3): the key, whether this packet
// ends it, and its duration so far on the 8 kHz clock.
type TelephoneEvent struct {
	Event    uint8
	End      bool
	Volume   uint8
	Duration uint16
}

// ErrShortEvent: a telephone-event payload shorter than its 4 bytes.
var ErrShortEvent = errors.New("sip: telephone-event payload shorter than 4 bytes")

// ParseTelephoneEvent reads the first event of a payload (RFC 4733 allows more, redundant,
// blocks after it; they repeat what earlier packets said).
func ParseTelephoneEvent(p []byte) (TelephoneEvent, error) {
	if len(p) < 4 {
		return TelephoneEvent{}, ErrShortEvent
	}
	return TelephoneEvent{Event: p[0], End: p[1]&0x80 != 0, Volume: p[1] & 0x3f,
		Duration: binary.BigEndian.Uint16(p[2:4])}, nil
}

// Digit is the key an event names: 0-9, *, #, A-D (events 0-15); "" for other events (tones,
// flash), which are not keys.
func (e TelephoneEvent) Digit() string {
	const keys = "0123456789*#ABCD"
	if int(e.Event) < len(keys) {
		return keys[e.Event : e.Event+1]
	}
	return ""
}

// DTMFDetector turns a telephone-event RTP stream into key presses: one per event, when its
// first end packet arrives (senders repeat the end three times; all carry the event's RTP
// timestamp, which identifies it). Sans-IO: packets in, presses out.
type DTMFDetector struct {
	last    uint32
	hasLast bool
}

// Press is a completed key press.
type Press struct {
	Digit      string
	DurationMS int
}

// Packet takes one telephone-event RTP packet's timestamp and payload and returns the press it
// completes, if any.
func (d *DTMFDetector) Packet(ts uint32, payload []byte) (Press, bool) {
	ev, err := ParseTelephoneEvent(payload)
	if err != nil || !ev.End || ev.Digit() == "" {
		return Press{}, false
	}
	if d.hasLast && d.last == ts {
		return Press{}, false // a retransmitted end
	}
	d.last, d.hasLast = ts, true
	return Press{Digit: ev.Digit(), DurationMS: int(ev.Duration) / 8}, true
}
