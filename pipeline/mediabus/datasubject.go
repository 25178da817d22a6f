package mediabus

// DataPrefix is the core-NATS subject root of room data messages (never JetStream: they are
// not part of the room's history).
const DataPrefix = "dm"

// DataRoomSubject carries data messages to every peer of a room: dm.<room>.
func DataRoomSubject(room string) string { return DataPrefix + "." + room }

// DataPeerSubject carries data messages to one peer of a room: dm.<room>.<peer>.
func DataPeerSubject(room, peer string) string { return DataPrefix + "." + room + "." + peer }
