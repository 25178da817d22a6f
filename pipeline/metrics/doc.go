// Package metrics is a node's Prometheus registry and its operator endpoints (GET /metrics,
// GET /readyz). It reads the figures the components keep anyway at scrape time, through
// Sources the node's wiring fills in, so the media path pays nothing for being observed.
//
// Imports: events, pipeline/mediabus, pipeline/natsnode, pipeline/rtc, pipeline/stagetime
package metrics
