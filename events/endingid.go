package events

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// EndingID is the id of an event that ends part of a session: "lost-" and 128 bits of a hash
// of the room, the session's node, its peer, its join time and what (its parts: "left",
// "track" and the track, "sub" and the track). It depends on nothing else, so every writer
// that ends the same session (a surviving node ending a lost node's sessions, the node itself
// restarted, the session closing on its own just after the log ended it) derives the same
// id, and JetStream's duplicate window stores the event once. The prefix is historical (the
// first writer was the lost-node reaper) and means nothing to readers.
func EndingID(room, node, peer string, joined time.Time, what ...string) string {
	h := sha256.New()
	for _, p := range append([]string{room, node, peer, strconv.FormatInt(joined.UnixNano(), 10)}, what...) {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "lost-" + hex.EncodeToString(h.Sum(nil)[:16])
}
