// Package roomsapi serves the rooms projection over HTTP: GET /v1/rooms (the live rooms) and
// GET /v1/rooms/{room} (one room), as RoomView JSON, the same view `jetmedia rooms` prints.
// It reads the rooms KV bucket only; the event log's own endpoints are historyapi's.
//
// Imports: pipeline/auth, pipeline/rtc, projections
package roomsapi
