package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"time"
)

// startPprof serves Go's profiler (net/http/pprof) on addr, apart from the node's HTTP API so
// that it is never exposed by accident: it is off unless `serve --pprof host:port` asks for
// it. The returned stop closes it.
func startPprof(addr string, log *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/heapdump", heapDump)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof server stopped", "err", err)
		}
	}()
	log.Info("pprof listening", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// heapDump answers with the node's heap dump (runtime/debug.WriteHeapDump, the format of
// runtime/heapdump.go) taken after two GCs, the second so that what a sync.Pool kept through
// the first is gone too. A heap profile tells which sites hold live bytes; only a dump tells
// which spans the live objects sit in, i.e. what keeps a partly used span in use (the churn
// soak's JETMEDIA_CHURN_HEAPDUMP). The dump stops the world while it is written.
func heapDump(w http.ResponseWriter, _ *http.Request) {
	f, err := os.CreateTemp("", "jetmedia-heapdump-*")
	if err != nil {
		http.Error(w, fmt.Sprintf("heap dump: %v", err), http.StatusInternalServerError)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	runtime.GC()
	runtime.GC()
	debug.WriteHeapDump(f.Fd())
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		http.Error(w, fmt.Sprintf("heap dump: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = io.Copy(w, f)
}
