package loadgen

import "time"

// framePackets splits one video frame of frameBytes payload bytes into packet payload sizes
// of at most maxPayload each, as even as possible (as encoders' packetizers do). Every packet
// holds at least a probe, so a tiny frame still makes one probe-sized packet.
func framePackets(frameBytes, maxPayload int) []int {
	if maxPayload < probeSize {
		maxPayload = probeSize
	}
	frameBytes = max(frameBytes, probeSize)
	n := (frameBytes + maxPayload - 1) / maxPayload
	// Even sizes; the first frameBytes%n packets carry one byte more.
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = frameBytes / n
		if i < frameBytes%n {
			sizes[i]++
		}
	}
	for i := range sizes {
		sizes[i] = max(sizes[i], probeSize)
	}
	return sizes
}

// frameBytes is the payload size of one frame at bitrate bits/s and fps frames/s.
func frameBytes(bitrate, fps int) int {
	if fps <= 0 {
		return 0
	}
	return bitrate / 8 / fps
}

// due is when the k-th event of a stream of rate per second starting at start is due. It is
// computed from the start each time, so pacing does not drift however late each send was.
func due(start time.Time, k int64, rate int) time.Time {
	if rate <= 0 {
		return start
	}
	return start.Add(time.Duration(k * int64(time.Second) / int64(rate)))
}

// spread is when the i-th of n joins happens when they are spread evenly over ramp: the first
// at once, the last at ramp.
func spread(i, n int, ramp time.Duration) time.Duration {
	if n <= 1 || ramp <= 0 {
		return 0
	}
	return time.Duration(int64(ramp) * int64(i) / int64(n-1))
}
