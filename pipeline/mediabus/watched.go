package mediabus

// Watched reports whether anyone receives a layer of a track this node publishes: a viewer on
// this node (a live local subscription) or a subscription anywhere in the NATS system
// (interest in its subject). A bus that cannot tell (not local, or without an interest
// function) says true, so nothing is paused on its word.
func (b *MediaBus) Watched(room, track, layer string) bool {
	if !b.local || b.interest == nil {
		return true
	}
	subj := MediaSubject(room, track, layer)
	if b.interest(subj) {
		return true
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, s := range b.subs[subj] {
		if !s.sub.ended.Load() {
			return true
		}
	}
	return false
}
