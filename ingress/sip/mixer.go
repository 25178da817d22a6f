package sip

// MaxMixInputs bounds the room tracks a call decodes: each costs an Opus decoder (~6 µs a
// 20 ms frame, BenchmarkOpus) whether or not it is among the loudest.
const MaxMixInputs = 16

// Mix writes into out (FrameSamples long) the sum of the n loudest of frames (nil entries are
// silent inputs), clipped to 16 bits, and returns how many inputs it summed. Loudness is a
// frame's energy; ties keep the earlier input. It allocates nothing.
func Mix(out []int16, frames [][]int16, n int) int {
	clear(out)
	var pick [MaxMixInputs]int
	var energy [MaxMixInputs]int64
	k := 0
	for i, f := range frames {
		if i >= MaxMixInputs || f == nil {
			continue
		}
		var e int64
		for _, s := range f {
			e += int64(s) * int64(s)
		}
		if e == 0 {
			continue
		}
		// Insert into the sorted top list (n is small: a handful of speakers).
		j := min(k, n)
		for j > 0 && energy[j-1] < e {
			if j < n {
				pick[j], energy[j] = pick[j-1], energy[j-1]
			}
			j--
		}
		if j < n {
			pick[j], energy[j] = i, e
			k = min(k+1, n)
		}
	}
	if k == 0 {
		return 0
	}
	for i := range out {
		var sum int32
		for _, p := range pick[:k] {
			if f := frames[p]; i < len(f) {
				sum += int32(f[i])
			}
		}
		out[i] = int16(max(-32768, min(32767, sum)))
	}
	return k
}
