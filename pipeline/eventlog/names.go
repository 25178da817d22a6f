package eventlog

// Names on the wire. They are a public contract (see schemas/ and docs/): change them only with
// a migration.
const (
	// StreamEvents holds every room's event log.
	StreamEvents = "EVENTS"
	// EventsSubjects is the stream's subject space: ev.<room>.<kind>.
	EventsSubjects = "ev.>"
	// BucketRooms is the KV bucket with every room's live state (the projection).
	BucketRooms = "rooms"
	// BucketSnapshots is the KV bucket of room snapshots: each room's folded state at a log
	// sequence, bound to the log by the room's chain head there (projections.SnapshotStore).
	BucketSnapshots = "snapshots"
	// BucketSourcesLock is the KV bucket, in the region, whose one key lets one writer at a time
	// change the EVENTS stream's sources (edgesource.go). It exists once an edge was sourced.
	BucketSourcesLock = "events_sources_lock"
)

// EventSubject is the subject an event of kind (see events.Kind) in room is stored under.
func EventSubject(room, kind string) string { return "ev." + room + "." + kind }

// RoomEventsFilter matches every event of one room.
func RoomEventsFilter(room string) string { return "ev." + room + ".>" }
