// Package audiolevel holds the sans-IO audio-level machinery: reading the RFC 6464 audio-level
// header extension (urn:ietf:params:rtp-hdrext:ssrc-audio-level) from a raw RTP packet without
// allocating, a Meter per published audio track (smoothed level, speaking or not with
// hysteresis, when to report), and a Ranker per room (current speakers ranked, loudest first,
// with a margin so that two voices of about the same level do not swap places, and the N
// tracks a node forwards). Nothing here reads a clock or does I/O: every input carries now.
//
// Levels are RFC 6464's: -dBov from 0 (loudest) to 127 (silence); a smaller number is louder.
//
// Imports: none
package audiolevel
