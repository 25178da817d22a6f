package audiolevel

import (
	"errors"
	"fmt"
)

// Report is one audio track's level as its publisher's node measured it: what the room's
// rankings are made of. It travels between nodes in a few bytes (AppendBinary).
type Report struct {
	Track    string
	Level    uint8
	Speaking bool
}

// reportVersion is the first byte of an encoded report.
const reportVersion = 1

// MaxTrack bounds a report's track id (ids are 26 characters; 64 is the room-name limit).
const MaxTrack = 64

// ErrReport is returned by ParseReport for bytes that are not a report.
var ErrReport = errors.New("audiolevel: not a level report")

// AppendBinary appends the report's wire form to b: version, flags (bit 0: speaking), level,
// track id.
func (r Report) AppendBinary(b []byte) ([]byte, error) {
	if len(r.Track) == 0 || len(r.Track) > MaxTrack {
		return b, fmt.Errorf("audiolevel: report track id of %d bytes", len(r.Track))
	}
	var flags byte
	if r.Speaking {
		flags = 1
	}
	b = append(b, reportVersion, flags, min(r.Level, Silence))
	return append(b, r.Track...), nil
}

// ParseReport decodes a report's wire form.
func ParseReport(b []byte) (Report, error) {
	if len(b) < 4 || len(b) > 3+MaxTrack || b[0] != reportVersion || b[2] > Silence {
		return Report{}, ErrReport
	}
	return Report{Track: string(b[3:]), Level: b[2], Speaking: b[1]&1 != 0}, nil
}
