package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jetmedia/jetmedia/pipeline/natsnode"
)

// ErrDataDirBusy means another process (a running server) holds the data directory.
var ErrDataDirBusy = errors.New("data directory is in use by a running jetmedia server")

// lockFile is the file whose flock marks a data directory as in use: JetStream's store has no
// lock of its own, and two servers on one store would corrupt it.
const lockFile = "LOCK"

// natsURLFile records the client URL of a server that listens for NATS clients, so that the
// CLI run against the same data directory can find it.
const natsURLFile = "nats.url"

// natsAuthFile records the user and password of the node's own NATS connections next to
// natsURLFile (mode 0600, like it): only the node's user may write the log, and the CLI on the
// same data directory acts for the node (projections rebuild writes a bucket).
const natsAuthFile = "nats.auth"

// recordNATS writes the client URL and the node's credentials of a running server into dir.
func recordNATS(dir, url string, srv *natsnode.Server) error {
	if err := os.WriteFile(filepath.Join(dir, natsURLFile), []byte(url+"\n"), 0o600); err != nil {
		return fmt.Errorf("record nats url: %w", err)
	}
	user, pw := srv.NodeCredentials()
	if err := os.WriteFile(filepath.Join(dir, natsAuthFile), []byte(user+"\n"+pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("record nats credentials: %w", err)
	}
	return nil
}

// forgetNATS removes what recordNATS wrote.
func forgetNATS(dir string) {
	_ = os.Remove(filepath.Join(dir, natsURLFile))
	_ = os.Remove(filepath.Join(dir, natsAuthFile))
}

// RunningNATSCredentials returns the user and password of the node running on dir ("" with
// none recorded).
func RunningNATSCredentials(dir string) (user, password string) {
	b, err := os.ReadFile(filepath.Join(dir, natsAuthFile))
	if err != nil {
		return "", ""
	}
	user, password, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	return user, password
}

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
