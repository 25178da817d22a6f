// Package httpserver is the node's HTTP server hardened for the open internet: read-header,
// read, write and idle timeouts, a cap on open connections, and the origins a browser page may
// call the node from (CORS and the /rtc WebSocket). Handlers that stream longer than the write
// timeout extend their own deadline (Extend); hijacked connections such as WebSockets leave the
// server's deadlines behind when they are taken over.
//
// Imports: none
package httpserver
