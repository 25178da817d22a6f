package main

import (
	"flag"

	"github.com/jetmedia/jetmedia/pipeline/httpserver"
)

// addHTTPFlags registers the HTTP server's protection (pipeline/httpserver).
func addHTTPFlags(fs *flag.FlagSet, c *httpserver.Config) {
	fs.DurationVar(&c.ReadHeaderTimeout, "http-read-header-timeout", c.ReadHeaderTimeout, "close a connection that has not sent a request's headers within this")
	fs.DurationVar(&c.ReadTimeout, "http-read-timeout", c.ReadTimeout, "close a connection that has not sent a whole request, body included, within this")
	fs.DurationVar(&c.WriteTimeout, "http-write-timeout", c.WriteTimeout, "cut a response not written within this (the events stream extends it as it goes; WebSockets are exempt)")
	fs.DurationVar(&c.IdleTimeout, "http-idle-timeout", c.IdleTimeout, "close a keep-alive connection idle for this long")
	fs.IntVar(&c.MaxConns, "http-max-conns", c.MaxConns, "most HTTP connections open at once; more wait to be accepted")
	fs.Var(listFlag{&c.AllowedOrigins}, "allowed-origins", "origins besides the node's own whose pages may call it (CORS, /rtc): https://app.example.com, *.example.com or * (comma-separated); dev mode also allows loopback pages")
}
