// Package browser is the browser SDK of jetmedia rooms, the JavaScript twin of package client:
// one ES module (sdk/jetmedia.js, no build step) that speaks the signalling protocol of package
// signal, and the demo video room built on it (room.html, room.js). Every node serves them at
// /sdk/jetmedia.js, /room.html and /room.js (docs/sdk.md).
//
// Imports: none
package browser

import (
	"embed"
	"net/http"
)

//go:embed sdk room.html room.js
var files embed.FS

// Register serves the SDK and the demo room.
func Register(mux *http.ServeMux) {
	h := http.FileServerFS(files)
	mux.Handle("GET /sdk/", h)
	mux.Handle("GET /room.html", h)
	mux.Handle("GET /room.js", h)
}
