package sipcall

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/tests/testports"
)

// requireBaresip returns the baresip binary. Without it the test skips loudly, and fails under
// CI=true, where .ci/run installs it.
func requireBaresip(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("baresip")
	if err == nil {
		if _, err = os.Stat(filepath.Join(baresipModules, "ctrl_tcp.so")); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("baresip with its modules (%s) not found: the SIP tests need it (apt-get install -y --no-install-recommends baresip): %v", baresipModules, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "SKIP (loud): "+msg)
	t.Skip(msg)
	return ""
}

const baresipModules = "/usr/lib/baresip/modules"

// freePort is a loopback port free for TCP and UDP when asked.
func freePort(t *testing.T) int {
	t.Helper()
	return testports.One(t)
}

// freeSIPPort is a loopback port for baresip's sip_listen: free for UDP and TCP, and the one
// after it free for TCP too (baresip binds its SIP/TLS transport there and gives up when it
// is taken).
func freeSIPPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		port := freePort(t)
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1)); err == nil {
			_ = l.Close()
			return port
		}
	}
	t.Fatal("no free port pair for baresip")
	return 0
}

// writeTone writes a mono 16-bit 8 kHz wav of a sine (aufile's input).
func writeTone(t *testing.T, path string, hz float64, seconds int) {
	t.Helper()
	n := 8000 * seconds
	data := make([]byte, 2*n)
	for i := range n {
		binary.LittleEndian.PutUint16(data[2*i:], uint16(int16(8000*math.Sin(2*math.Pi*hz*float64(i)/8000))))
	}
	var hdr [44]byte
	copy(hdr[0:], "RIFF")
	binary.LittleEndian.PutUint32(hdr[4:], uint32(36+len(data)))
	copy(hdr[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(hdr[16:], 16)
	binary.LittleEndian.PutUint16(hdr[20:], 1)
	binary.LittleEndian.PutUint16(hdr[22:], 1)
	binary.LittleEndian.PutUint32(hdr[24:], 8000)
	binary.LittleEndian.PutUint32(hdr[28:], 16000)
	binary.LittleEndian.PutUint16(hdr[32:], 2)
	binary.LittleEndian.PutUint16(hdr[34:], 16)
	copy(hdr[36:], "data")
	binary.LittleEndian.PutUint32(hdr[40:], uint32(len(data)))
	require.NoError(t, os.WriteFile(path, append(hdr[:], data...), 0o644))
}

// readWav reads the samples of a 16-bit PCM wav (the first channel).
func readWav(t *testing.T, path string) ([]int16, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Greater(t, len(b), 44, "%s is empty", path)
	channels := int(binary.LittleEndian.Uint16(b[22:]))
	rate := int(binary.LittleEndian.Uint32(b[24:]))
	// Find the data chunk (sndfile may write others before it).
	off := 12
	for off+8 <= len(b) && string(b[off:off+4]) != "data" {
		off += 8 + int(binary.LittleEndian.Uint32(b[off+4:]))
	}
	require.LessOrEqual(t, off+8, len(b), "no data chunk in %s", path)
	data := b[off+8:]
	out := make([]int16, 0, len(data)/2/max(channels, 1))
	for i := 0; i+2 <= len(data); i += 2 * max(channels, 1) {
		out = append(out, int16(binary.LittleEndian.Uint16(data[i:])))
	}
	return out, rate
}

// baresip is a running baresip with an aufile source, the sndfile recorder and its ctrl_tcp
// command interface.
type baresip struct {
	t      *testing.T
	dir    string
	port   int // its SIP port
	cmd    *exec.Cmd
	conn   net.Conn
	mu     sync.Mutex
	events []map[string]any
	resp   chan map[string]any
	done   chan struct{}
	log    strings.Builder
}

// startBaresip runs baresip as user:pass with tone.wav (hz) as its microphone.
func startBaresip(t *testing.T, bin, user, pass string, hz float64) *baresip {
	t.Helper()
	return startBaresipWith(t, bin, user, pass, hz, "")
}

// startBaresipWith adds account parameters (";answermode=auto").
func startBaresipWith(t *testing.T, bin, user, pass string, hz float64, acctParams string) *baresip {
	t.Helper()
	dir := t.TempDir()
	sipPort := freeSIPPort(t)
	writeTone(t, filepath.Join(dir, "tone.wav"), hz, 30)
	ctrl := freePort(t)
	for ctrl == sipPort+1 {
		ctrl = freePort(t)
	}
	cfg := fmt.Sprintf(`module_path %s
sip_listen 127.0.0.1:%d
audio_source aufile,%s
audio_player aubridge,x
audio_alert aubridge,x
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
snd_path %s
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:%d
`, baresipModules, sipPort, filepath.Join(dir, "tone.wav"), dir, ctrl)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o644))
	acct := fmt.Sprintf("<sip:%s@127.0.0.1>;auth_pass=%s;regint=0;audio_codecs=PCMU%s\n", user, pass, acctParams)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "accounts"), []byte(acct), 0o644))
	b := &baresip{t: t, dir: dir, port: sipPort, resp: make(chan map[string]any, 16), done: make(chan struct{})}
	b.cmd = exec.Command(bin, "-f", dir)
	b.cmd.Dir = dir
	b.cmd.Stdout = &lockedWriter{mu: &b.mu, w: &b.log}
	b.cmd.Stderr = b.cmd.Stdout
	require.NoError(t, b.cmd.Start())
	exited := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		if b.conn != nil {
			_ = b.conn.Close()
		}
		_ = b.cmd.Process.Kill()
		<-exited
		<-b.done
		if t.Failed() {
			t.Logf("baresip output:\n%s", b.output())
		}
	})
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b.conn, err = net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(ctrl)); err == nil {
			break
		}
	}
	if err != nil {
		close(b.done)
	}
	require.NoError(t, err, "baresip's ctrl_tcp did not open:\n%s", b.output())
	go b.read()
	return b
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (b *baresip) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.ReplaceAll(b.log.String(), "\r", "\n")
}

// read decodes ctrl_tcp's netstrings: events are kept, responses go to resp.
func (b *baresip) read() {
	defer close(b.done)
	r := bufio.NewReader(b.conn)
	for {
		lenStr, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(lenStr, ":")))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		msg := make([]byte, n+1) // the payload and its trailing comma
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		var m map[string]any
		if json.Unmarshal(msg[:n], &m) != nil {
			continue
		}
		if m["event"] == true {
			b.mu.Lock()
			b.events = append(b.events, m)
			b.mu.Unlock()
			continue
		}
		select {
		case b.resp <- m:
		default:
		}
	}
}

// command sends one command and waits for its response.
func (b *baresip) command(cmd, params string) map[string]any {
	b.t.Helper()
	js, err := json.Marshal(map[string]string{"command": cmd, "params": params, "token": cmd})
	require.NoError(b.t, err)
	_, err = fmt.Fprintf(b.conn, "%d:%s,", len(js), js)
	require.NoError(b.t, err)
	select {
	case m := <-b.resp:
		return m
	case <-time.After(10 * time.Second):
		b.t.Fatalf("baresip did not answer %s %s:\n%s", cmd, params, b.output())
		return nil
	}
}

// waitEvent waits for an event of type typ and returns it.
func (b *baresip) waitEvent(typ string, within time.Duration) map[string]any {
	b.t.Helper()
	var found map[string]any
	require.Eventually(b.t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.events {
			if e["type"] == typ {
				found = e
				return true
			}
		}
		return false
	}, within, 20*time.Millisecond, "no baresip event %s; events: %v\n%s", typ, b.eventTypes(), b.output())
	return found
}

func (b *baresip) eventTypes() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, e := range b.events {
		out = append(out, fmt.Sprint(e["type"], " ", e["param"]))
	}
	return out
}

// waitRecorded waits until the phone has decoded at least d of call audio (sndfile's dump
// grows as frames are decoded), so a test hangs up after enough was heard however slowly a
// loaded machine lets baresip and the node run (a CI run's phone got a ninth of the call's
// audio rate for seconds).
func (b *baresip) waitRecorded(d time.Duration, within time.Duration) {
	b.t.Helper()
	const rate, header = 8000, 44
	want := int64(header + 2*rate*d/time.Second)
	var size int64
	require.Eventually(b.t, func() bool {
		files, err := filepath.Glob(filepath.Join(b.dir, "dump-*-dec.wav"))
		if err != nil || len(files) != 1 {
			return false
		}
		st, err := os.Stat(files[0])
		if err != nil {
			return false
		}
		size = st.Size()
		return size >= want
	}, within, 100*time.Millisecond, "the phone's recording stayed at %d bytes (want %d)", size, want)
}

// recording is the audio baresip decoded from the call (sndfile's dump-…-dec.wav).
func (b *baresip) recording() ([]int16, int) {
	b.t.Helper()
	files, err := filepath.Glob(filepath.Join(b.dir, "dump-*-dec.wav"))
	require.NoError(b.t, err)
	require.Len(b.t, files, 1, "sndfile's recording of the call")
	return readWav(b.t, files[0])
}

// goertzel is the power of one frequency in pcm, normalised by the signal's length.
func goertzel(pcm []int16, rate int, hz float64) float64 {
	w := 2 * math.Pi * hz / float64(rate)
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, x := range pcm {
		s0 := float64(x) + c*s1 - s2
		s2, s1 = s1, s0
	}
	return (s1*s1 + s2*s2 - c*s1*s2) / float64(len(pcm)*len(pcm))
}

func rms(pcm []int16) float64 {
	var s float64
	for _, v := range pcm {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(max(len(pcm), 1)))
}
