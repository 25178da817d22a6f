package mediabus

// Names on the wire. They are a public contract (see schemas/ and docs/): change them only with
// a migration.
const (
	// MediaPrefix and FeedbackPrefix are the core-NATS subject roots of the media plane.
	MediaPrefix    = "md"
	FeedbackPrefix = "fb"
)

// MediaSubject carries the RTP of one layer of one track: md.<room>.<track>.<layer>.
func MediaSubject(room, track, layer string) string {
	return MediaPrefix + "." + room + "." + track + "." + layer
}

// FeedbackSubject carries RTCP feedback (PLI, FIR) toward a track's publisher: fb.<room>.<track>.
func FeedbackSubject(room, track string) string {
	return FeedbackPrefix + "." + room + "." + track
}
