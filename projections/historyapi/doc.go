// Package historyapi serves the event log itself over HTTP, not the KV projection: a room's
// events as stored (GET /v1/rooms/{room}/events) and its state folded at any instant (GET
// /v1/rooms/{room}/state), both behind the admin grant, and the timeline page that draws a
// room from those two (/timeline.html, /timeline.js).
//
// Imports: events, pipeline/eventlog, pipeline/httpserver, pipeline/rtc, projections, projections/roomsapi
package historyapi
