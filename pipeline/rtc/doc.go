// Package rtc holds what ingress and egress share at the media edge: the pion WebRTC API
// (codecs, interceptors, one ICE UDP port for every session) and the HTTP contract helpers of
// WHIP and WHEP (SDP bodies, error replies). It sits in pipeline because both transports'
// directions depend on it and neither may import the other. It does not touch NATS.
//
// Imports: events, pipeline/auth
package rtc
