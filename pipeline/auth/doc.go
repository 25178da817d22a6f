// Package auth owns jetmedia's access tokens: HS256 JWTs signed with configured keys (a key id
// in the header selects the key, so keys rotate without a restart of every client), carrying the
// room, the peer's identity and display name, its grants and a validity window. It verifies
// them, says which HTTP status a rejection maps to, and mints them for the token command and
// dev mode.
//
// It imports only events (for the id rules), so ingress, egress and the command can all use it.
//
// Imports: events
package auth
