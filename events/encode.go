package events

import (
	"encoding/json"
	"fmt"
	"time"
)

// Encode returns the JSON wire form of e.
func Encode(e Envelope) ([]byte, error) {
	return AppendEncode(make([]byte, 0, encodedSizeHint(e)), e)
}

// AppendEncode appends the JSON wire form of e to dst: byte for byte what encoding/json's
// Marshal writes for e (the chain hashes those bytes, see Hash), without its reflection and
// allocations on the common envelope (plain ASCII ids, a time with a four-digit year, data
// already compact). An envelope with anything else (an escape to write, data to compact or
// reject) goes through encoding/json. The append hot path is measured in docs/benchmarks.md.
func AppendEncode(dst []byte, e Envelope) ([]byte, error) {
	if out, ok := appendFast(dst, &e); ok {
		return out, nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return dst, fmt.Errorf("events: encode envelope %s: %w", e.ID, err)
	}
	return append(dst, b...), nil
}

func encodedSizeHint(e Envelope) int {
	return 160 + len(e.ID) + len(e.Type) + len(e.Source) + 2*len(e.Room) + len(e.Actor) + len(e.Node) +
		len(e.CausationID) + len(e.PrevHash) + len(e.Data)
}

// appendFast writes e as encoding/json would when every part of it is written verbatim, and
// reports false (dst unchanged in content up to its length) when some part is not.
func appendFast(dst []byte, e *Envelope) ([]byte, bool) {
	n0 := len(dst)
	var ok bool
	dst, ok = appendPlainField(dst, `{"specversion":`, e.SpecVersion)
	dst, ok = appendPlainFieldIf(ok, dst, `,"id":`, e.ID)
	dst, ok = appendPlainFieldIf(ok, dst, `,"type":`, e.Type)
	dst, ok = appendPlainFieldIf(ok, dst, `,"source":`, e.Source)
	dst, ok = appendPlainFieldIf(ok, dst, `,"subject":`, e.Subject)
	if !ok {
		return dst[:n0], false
	}
	dst = append(dst, `,"time":"`...)
	if dst, ok = appendTime(dst, e.Time); !ok {
		return dst[:n0], false
	}
	dst = append(dst, '"')
	dst, ok = appendPlainField(dst, `,"room":`, e.Room)
	dst, ok = appendPlainFieldIf(ok, dst, `,"actor":`, e.Actor)
	dst, ok = appendPlainFieldIf(ok, dst, `,"node":`, e.Node)
	if ok && e.CausationID != "" {
		dst, ok = appendPlainField(dst, `,"causationid":`, e.CausationID)
	}
	if ok && e.PrevHash != "" {
		dst, ok = appendPlainField(dst, `,"prevhash":`, e.PrevHash)
	}
	if !ok {
		return dst[:n0], false
	}
	dst = append(dst, `,"data":`...)
	switch {
	case e.Data == nil:
		dst = append(dst, "null"...)
	case plainJSON(e.Data):
		dst = append(dst, e.Data...)
	default:
		return dst[:n0], false
	}
	return append(dst, '}'), true
}

func appendPlainFieldIf(ok bool, dst []byte, name, s string) ([]byte, bool) {
	if !ok {
		return dst, false
	}
	return appendPlainField(dst, name, s)
}

// appendPlainField appends name and s as a JSON string if encoding/json writes s verbatim:
// printable ASCII without '"', '\\' and the HTML characters it escapes.
func appendPlainField(dst []byte, name, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if !plainStringByte[s[i]] {
			return dst, false
		}
	}
	dst = append(dst, name...)
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"'), true
}

// plainStringByte marks the bytes encoding/json copies into a string unescaped and that need
// no UTF-8 check.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// appendTime appends t as time.Time.MarshalJSON does (without the quotes), or reports false
// for the times it refuses: a year outside [0,9999] or a zone offset of 24 hours or more.
func appendTime(dst []byte, t time.Time) ([]byte, bool) {
	n0 := len(dst)
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	b := dst[n0:]
	if len(b) < len("2006-01-02T15:04:05Z") || b[4] != '-' {
		return dst[:n0], false
	}
	if b[len(b)-1] != 'Z' {
		zone := b[len(b)-len("-07:00"):]
		if c := zone[0]; c != '+' && c != '-' || zone[1] > '2' || zone[1] == '2' && zone[2] >= '4' {
			return dst[:n0], false
		}
	}
	return dst, true
}

// plainJSON reports whether b is one JSON value that encoding/json copies verbatim into the
// envelope: valid, with no whitespace outside strings, no '<', '>' or '&' and no U+2028 or
// U+2029 (it would escape those), nested at most maxPlainDepth deep. Anything else takes
// encoding/json's path, which compacts, escapes or rejects it.
func plainJSON(b []byte) bool {
	c := plainChecker{b: b}
	return c.value(0) && c.i == len(b)
}

const maxPlainDepth = 32

type plainChecker struct {
	b []byte
	i int
}

func (c *plainChecker) value(depth int) bool {
	if c.i >= len(c.b) || depth > maxPlainDepth {
		return false
	}
	switch ch := c.b[c.i]; {
	case ch == '{':
		return c.object(depth + 1)
	case ch == '[':
		return c.array(depth + 1)
	case ch == '"':
		return c.str()
	case ch == '-' || ch >= '0' && ch <= '9':
		return c.number()
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	}
	return false
}

func (c *plainChecker) literal(lit string) bool {
	if len(c.b)-c.i < len(lit) || string(c.b[c.i:c.i+len(lit)]) != lit {
		return false
	}
	c.i += len(lit)
	return true
}

func (c *plainChecker) object(depth int) bool {
	c.i++ // '{'
	if c.i < len(c.b) && c.b[c.i] == '}' {
		c.i++
		return true
	}
	for {
		if c.i >= len(c.b) || c.b[c.i] != '"' || !c.str() {
			return false
		}
		if c.i >= len(c.b) || c.b[c.i] != ':' {
			return false
		}
		c.i++
		if !c.value(depth) || c.i >= len(c.b) {
			return false
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case '}':
			c.i++
			return true
		default:
			return false
		}
	}
}

func (c *plainChecker) array(depth int) bool {
	c.i++ // '['
	if c.i < len(c.b) && c.b[c.i] == ']' {
		c.i++
		return true
	}
	for {
		if !c.value(depth) || c.i >= len(c.b) {
			return false
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case ']':
			c.i++
			return true
		default:
			return false
		}
	}
}

func (c *plainChecker) str() bool {
	c.i++ // '"'
	for c.i < len(c.b) {
		ch := c.b[c.i]
		switch {
		case ch == '"':
			c.i++
			return true
		case ch == '\\':
			if !c.escape() {
				return false
			}
		case ch < 0x20 || ch == '<' || ch == '>' || ch == '&':
			return false
		case ch == 0xE2 && c.i+2 < len(c.b) && c.b[c.i+1] == 0x80 && c.b[c.i+2]&^1 == 0xA8:
			return false // U+2028 or U+2029
		default:
			c.i++
		}
	}
	return false
}

func (c *plainChecker) escape() bool {
	if c.i+1 >= len(c.b) {
		return false
	}
	switch c.b[c.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		c.i += 2
		return true
	case 'u':
		if len(c.b)-c.i < 6 {
			return false
		}
		for _, h := range c.b[c.i+2 : c.i+6] {
			if !isHex(h) {
				return false
			}
		}
		c.i += 6
		return true
	}
	return false
}

func isHex(ch byte) bool {
	return ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch >= 'A' && ch <= 'F'
}

func (c *plainChecker) number() bool {
	if c.b[c.i] == '-' {
		c.i++
	}
	switch {
	case c.i >= len(c.b):
		return false
	case c.b[c.i] == '0':
		c.i++
	case c.b[c.i] >= '1' && c.b[c.i] <= '9':
		c.digits()
	default:
		return false
	}
	if c.i < len(c.b) && c.b[c.i] == '.' {
		c.i++
		if c.digits() == 0 {
			return false
		}
	}
	if c.i < len(c.b) && (c.b[c.i] == 'e' || c.b[c.i] == 'E') {
		c.i++
		if c.i < len(c.b) && (c.b[c.i] == '+' || c.b[c.i] == '-') {
			c.i++
		}
		if c.digits() == 0 {
			return false
		}
	}
	return true
}

func (c *plainChecker) digits() int {
	n := 0
	for c.i < len(c.b) && c.b[c.i] >= '0' && c.b[c.i] <= '9' {
		c.i++
		n++
	}
	return n
}
