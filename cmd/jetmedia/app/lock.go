package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrDataDirBusy means another process (a running server) holds the data directory.
var ErrDataDirBusy = errors.New("data directory is in use by a running jetmedia server")

// lockFile is the file whose flock marks a data directory as in use: JetStream's store has no
// lock of its own, and two servers on one store would corrupt it.
const lockFile = "LOCK"

// natsURLFile records the client URL of a server that listens for NATS clients, so that the
// CLI run against the same data directory can find it.
const natsURLFile = "nats.url"

// LockDataDir takes the data directory's lock; release it with the returned function.
func LockDataDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	busy, err := lockExclusive(f)
	if err != nil || busy {
		_ = f.Close()
		if busy {
			return nil, fmt.Errorf("%s: %w", dir, ErrDataDirBusy)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	return func() {
		unlock(f)
		_ = f.Close()
	}, nil
}

// RunningNATSURL returns the NATS URL a server running on dir announced, or "".
func RunningNATSURL(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, natsURLFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
