package devcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// StopGrace is how long a node gets to stop after SIGTERM before it is killed.
const StopGrace = 15 * time.Second

// Run writes the nodes' config files, starts each as `binary node.Args...` (all at once: a
// JetStream meta group needs its peers to elect a leader), copies their log lines to out
// prefixed with the node's name, calls ready once every node answers /readyz, and runs until
// ctx ends or a node exits; then it stops them all (SIGTERM, SIGKILL after StopGrace).
func Run(ctx context.Context, binary string, nodes []Node, out io.Writer, ready func()) error {
	for _, n := range nodes {
		if n.Config == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(n.ConfigPath), 0o755); err != nil {
			return fmt.Errorf("devcluster: %w", err)
		}
		if err := os.WriteFile(n.ConfigPath, []byte(n.Config), 0o600); err != nil {
			return fmt.Errorf("devcluster: %w", err)
		}
	}
	var outMu sync.Mutex
	var wg sync.WaitGroup
	exited := make(chan error, len(nodes))
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(StopGrace):
			for _, p := range procs {
				_ = p.Process.Kill()
			}
			<-done
		}
	}()
	for _, n := range nodes {
		cmd := exec.Command(binary, n.Args...)
		pipe, err := cmd.StderrPipe()
		if err != nil {
			return fmt.Errorf("devcluster: %s: %w", n.Name, err)
		}
		cmd.Stdout = cmd.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("devcluster: start %s: %w", n.Name, err)
		}
		procs = append(procs, cmd)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				outMu.Lock()
				fmt.Fprintf(out, "%-10s %s\n", n.Name, sc.Text())
				outMu.Unlock()
			}
			exited <- fmt.Errorf("devcluster: node %s exited: %w", n.Name, cmd.Wait())
		}()
	}
	if err := waitReady(ctx, nodes, exited); err != nil {
		return err
	}
	ready()
	select {
	case <-ctx.Done():
		return nil
	case err := <-exited:
		// A Ctrl-C in a terminal reaches the nodes too, and one may exit before ctx ends.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
			return err
		}
	}
}

// waitReady polls each node's /readyz until it answers 200.
func waitReady(ctx context.Context, nodes []Node, exited <-chan error) error {
	deadline := time.Now().Add(3 * time.Minute)
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, n := range nodes {
		for {
			resp, err := hc.Get(n.HTTP + "/readyz")
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("devcluster: %s not ready after 3 minutes", n.Name)
			}
			select {
			case <-ctx.Done():
				return errors.Join(errors.New("devcluster: stopped before every node was ready"), ctx.Err())
			case err := <-exited:
				return err
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}
