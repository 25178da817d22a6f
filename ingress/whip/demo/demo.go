// Package demo is the WHIP/WHEP demo page every node serves at / (index.html, app.js): it
// publishes the camera with WHIP and plays the room back with WHEP, with plain fetch calls, as
// any WHIP or WHEP client would. The room SDK's demo is package browser's room.html.
//
// Imports: none
package demo

import (
	"embed"
	"net/http"
)

//go:embed index.html app.js
var files embed.FS

// Register serves the page at / and answers 404 for any other path no one else serves.
func Register(mux *http.ServeMux) {
	mux.Handle("GET /", http.FileServerFS(files))
}
