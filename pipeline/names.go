package pipeline

// Names on the wire. They are a public contract (see schemas/ and docs/): change them only with
// a migration.
const (
	// StreamEvents holds every room's event log.
	StreamEvents = "EVENTS"
	// EventsSubjects is the stream's subject space: ev.<room>.<kind>.
	EventsSubjects = "ev.>"
	// BucketRooms is the KV bucket with every room's live state (the projection).
	BucketRooms = "rooms"
	// MediaPrefix and FeedbackPrefix are the core-NATS subject roots of the media plane.
	MediaPrefix    = "md"
	FeedbackPrefix = "fb"
)

// EventSubject is the subject an event of kind (see events.Kind) in room is stored under.
func EventSubject(room, kind string) string { return "ev." + room + "." + kind }

// RoomEventsFilter matches every event of one room.
func RoomEventsFilter(room string) string { return "ev." + room + ".>" }

// MediaSubject carries the RTP of one layer of one track: md.<room>.<track>.<layer>.
func MediaSubject(room, track, layer string) string {
	return MediaPrefix + "." + room + "." + track + "." + layer
}

// FeedbackSubject carries RTCP feedback (PLI, FIR) toward a track's publisher: fb.<room>.<track>.
func FeedbackSubject(room, track string) string {
	return FeedbackPrefix + "." + room + "." + track
}
