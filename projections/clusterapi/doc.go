// Package clusterapi serves the system's nodes and the replication of its streams over HTTP
// (GET /v1/cluster: what `jetmedia cluster --json` prints, and the answering node's routes,
// gateways and leaf connections), behind an admin token for every
// room, the forgetting of a dead edge (POST /v1/cluster/nodes/{name}/forget, the same grant),
// and the console's cluster page that shows them (/cluster.html, /cluster.js).
//
// Imports: pipeline/auth, pipeline/natsnode, pipeline/rtc, projections/logtools, projections/presence, projections/roomsapi
package clusterapi
