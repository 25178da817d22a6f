// Package logtools is the work of jetmedia's commands on the event log and the read models:
// tail, rooms, replay, projections rebuild, audit verify/anchor/export/who and poison
// list/drop/redrive, cluster (and cluster forget/unforget). Each function takes what the command line parsed (an options struct, an
// open JetStream, the output writers) and prints what the command prints; cmd/jetmedia only
// parses flags, opens the node's JetStream and calls them.
//
// Imports: events, pipeline/eventlog, projections, projections/presence, projections/projector, projections/readmodels, projections/roomsapi
package logtools
