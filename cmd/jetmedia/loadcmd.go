package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/jetmedia/jetmedia/tests/loadgen"
)

// loadCmd runs `jetmedia load`: synthetic publishers and subscribers against --url, then a
// report (text, or JSON with --json) on stdout; a progress line on stderr when it is a
// terminal.
func loadCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := loadgen.Defaults()
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.URL, "url", cfg.URL, "the server's base URL (the only thing the run talks to)")
	fs.StringVar(&cfg.Mode, "mode", cfg.Mode, "whip: WHIP publishers, each in its own room, and WHEP subscribers of each; rooms: rooms of Go SDK peers (/rtc), publishers and subscribers of all of them")
	fs.IntVar(&cfg.Rooms, "rooms", cfg.Rooms, "rooms (--mode rooms)")
	fs.IntVar(&cfg.Publishers, "publishers", cfg.Publishers, "WHIP publishers, each in its own room; --mode rooms: publishing peers per room")
	fs.IntVar(&cfg.Subscribers, "subscribers", cfg.Subscribers, "WHEP subscribers per publisher; --mode rooms: subscribing peers per room, each receiving every publisher there")
	fs.IntVar(&cfg.Bitrate, "bitrate", cfg.Bitrate, "video bitrate of each publisher, bits/s")
	fs.IntVar(&cfg.FPS, "fps", cfg.FPS, "video frames per second")
	fs.IntVar(&cfg.MaxPayload, "max-payload", cfg.MaxPayload, "largest RTP payload, bytes")
	fs.StringVar(&cfg.Viewer, "viewer", cfg.Viewer, "how --mode whip subscribers receive: lite (pion's protocol libraries, viewers sharing batched sockets: a few µs of CPU a packet, so the tool takes little from a server on the same machine) or pion (a PeerConnection each)")
	fs.BoolVar(&cfg.ViewerTWCC, "viewer-twcc", cfg.ViewerTWCC, "viewers (pion or lite) send transport-wide congestion feedback every 100 ms, as browsers do, so the server's bandwidth estimator runs for them")
	fs.BoolVar(&cfg.Audio, "audio", cfg.Audio, "add a 50 packets/s audio track to each publisher")
	fs.BoolVar(&cfg.Simulcast, "simulcast", false, "--mode whip: publish video in three simulcast layers (q, h, f at 10, 30 and 100 % of --bitrate); each viewer gets one")
	fs.DurationVar(&cfg.Ramp, "ramp", cfg.Ramp, "spread the subscribers' joins over this long")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "hold with every subscriber joined this long (measured)")
	fs.StringVar(&cfg.Room, "room", cfg.Room, "room name prefix")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "the server's process id on this machine: report its CPU and RSS")
	fs.StringVar(&cfg.MetricsURL, "metrics-url", "", "the server's Prometheus `URL` (http://host:port/metrics), instead of --server-pid: report its CPU and RSS from the process metrics")
	fs.StringVar(&cfg.Token, "token", "", "bearer token for WHIP, WHEP, room joins and the room API, valid in every room (room \"*\") with the publish and subscribe grants, and admin in whip mode for the room API (default: minted by a dev-mode server's /dev/token)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write the tool's own CPU profile of the run to this file")
	if err := applyEnv(fs); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("load takes no arguments, got %q", fs.Args())
	}
	if f, ok := stderr.(*os.File); ok && loadTerminal(f) {
		cfg.Progress = stderr
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(stdout, rep)
	return nil
}

// viewerName is the report's viewer kind, with the feedback the viewers sent.
func viewerName(r *loadgen.Report) string {
	if r.ViewerTWCC {
		return r.Viewer + " (transport-cc)"
	}
	return r.Viewer
}

func loadTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printReport(w io.Writer, r *loadgen.Report) {
	if r.Mode == loadgen.ModeRooms {
		fmt.Fprintf(w, "%s: %d room(s) of %d SDK publisher(s) + %d subscriber(s), %d kbit/s at %d fps, ramp %.0fs, hold %.1fs\n",
			r.URL, r.Rooms, r.Publishers/max(r.Rooms, 1), r.SubscribersPerPublisher, r.BitrateBPS/1000, r.FPS, r.RampSeconds, r.HoldSeconds)
	} else {
		layers := ""
		if r.Simulcast {
			layers = " (simulcast: 3 layers)"
		}
		fmt.Fprintf(w, "%s: %d publisher(s) × %d %s subscriber(s), %d kbit/s%s at %d fps, ramp %.0fs, hold %.1fs\n",
			r.URL, r.Publishers, r.SubscribersPerPublisher, viewerName(r), r.BitrateBPS/1000, layers, r.FPS, r.RampSeconds, r.HoldSeconds)
	}
	fmt.Fprintf(w, "sent      %d packets, %d bytes\n", r.Sent.Packets, r.Sent.Bytes)
	fmt.Fprintf(w, "received  %d packets, %d bytes (%.0f packets/s in the hold)\n", r.Received.Packets, r.Received.Bytes, r.ReceivedPPS)
	fmt.Fprintf(w, "loss      %.3f %% (%d of %d), %d duplicates\n", r.LossPercent, r.LostPackets, r.ExpectedPackets, r.Duplicates)
	fmt.Fprintf(w, "latency   p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms (%d packets)\n",
		r.Latency.P50, r.Latency.P95, r.Latency.P99, r.Latency.Max, r.Latency.Count)
	fmt.Fprintf(w, "join      p50 %.0f ms  p95 %.0f ms  max %.0f ms; %d joined, %d failed, %d without media, %d missing a track\n",
		r.Join.P50, r.Join.P95, r.Join.Max, r.SubscribersJoined, r.SubscribersFailed, r.SubscribersNoMedia, r.SubscribersMissingTracks)
	fmt.Fprintf(w, "keyframe  first key-frame packet: p50 %.0f ms  p99 %.0f ms after the POST; p50 %.1f ms  p99 %.1f ms after ICE+DTLS\n",
		r.FirstKeyframe.P50, r.FirstKeyframe.P99, r.KeyframeAfterConnect.P50, r.KeyframeAfterConnect.P99)
	if r.FirstError != "" {
		fmt.Fprintf(w, "error     %s\n", r.FirstError)
	}
	printStages(w, r.ServerStages)
	if s := r.Server; s != nil {
		from := fmt.Sprintf("pid %d", s.PID)
		if s.MetricsURL != "" {
			from = s.MetricsURL
		}
		fmt.Fprintf(w, "server    %s: CPU %.1f %% of a core, RSS %.1f MiB (peak %.1f MiB), %.0f packets per core-second\n",
			from, s.CPUPercent, float64(s.RSSBytes)/(1<<20), float64(s.PeakRSS)/(1<<20), r.PacketsPerServerCore)
	}
	if s := r.Tool; s != nil {
		fmt.Fprintf(w, "tool      CPU %.1f %% of a core, RSS %.1f MiB\n", s.CPUPercent, float64(s.RSSBytes)/(1<<20))
	}
}

// printStages prints the server's forward-path stages during the hold, in the path's order.
func printStages(w io.Writer, st map[string]loadgen.StageQuantiles) {
	for _, name := range []string{"ingest", "fanout", "queue", "send"} {
		if q, ok := st[name]; ok {
			fmt.Fprintf(w, "stage     %-7s p50 <= %.3f ms  p99 <= %.3f ms (%d; server's buckets, -1: beyond 2 s)\n", name, q.P50, q.P99, q.Count)
		}
	}
}
