// Package rtmp is RTMP ingest: OBS, ffmpeg and hardware encoders publish FLV (H.264 video,
// AAC audio) to rtmp://HOST:PORT/live/<room>, with the access token in the stream key's query
// (<room>?token=…) or as the stream key itself (rtmp://HOST/live/<room>, key <token>).
//
// Core is the sans-IO session: the shared rtc.Lifecycle plus the tracks the publisher sends;
// an RTMP publisher joins, publishes and leaves like a WHIP one (transport "rtmp"). Server is
// the shell: the TCP listener, the RTMP handshake and commands (github.com/bluenviron/gortmplib),
// the token check before anything is recorded, H.264 repacketised to RTP without re-encoding
// (Packetizer), AAC transcoded to Opus by a supervised ffmpeg child process (Transcoder), and
// the packets put on each track's media subject. Each session is an rtc.Session in the node's
// one registry.
//
// It imports events and pipeline (auth, mediabus, rtc) only; never egress, cmd or projections.
//
// Imports: events, pipeline/auth, pipeline/mediabus, pipeline/rtc
package rtmp
