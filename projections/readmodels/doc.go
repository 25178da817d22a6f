// Package readmodels runs a node's pebble read models (the audit index and the analytics, in
// <data>/readmodels) from durable consumers with a poison queue, and serves them over HTTP:
// GET /v1/audit/who, GET /v1/analytics/rooms/{room} and GET /v1/audit/anchor.
//
// Imports: events, pipeline/auth, pipeline/eventlog, pipeline/httpserver, pipeline/rtc, projections
package readmodels
