package netimpair

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Relay carries UDP datagrams between one client and a target (a media node's ICE port),
// impairing each direction by its Link. The client sends to Addr; the relay sends on to the
// target from a socket of its own, so the target sees the relay as the client (an ICE
// peer-reflexive candidate) and answers it, and the relay sends the answer on to whichever
// address the client last sent from.
type Relay struct {
	front *net.UDPConn // the client's side: Addr
	back  *net.UDPConn // connected to the target
	up    *direction   // client → target
	down  *direction   // target → client

	client  atomic.Pointer[netip.AddrPort]
	readers sync.WaitGroup // the socket readers, which queue
	senders sync.WaitGroup // the deliveries, which drain the queues
	once    sync.Once
}

// Counters are what one direction of a relay did with the datagrams it was given.
type Counters struct {
	// Passed and PassedBytes count the datagrams delivered; Lost those dropped at random,
	// Overflow those dropped by the full queue behind the rate cap.
	Passed, PassedBytes, Lost, Overflow uint64
}

// direction is one way through the relay: the shaper decides, a goroutine delivers in time.
type direction struct {
	mu     sync.Mutex
	shaper *shaper
	c      Counters
	queue  chan timed
}

type timed struct {
	at  time.Time
	pkt []byte
}

// queueLen bounds the datagrams waiting in a direction (beyond what the link's own queue
// limit admits, this protects the test from a link with a long delay at a high rate).
const queueLen = 8192

// New starts a relay on a new loopback port toward target.
func New(target *net.UDPAddr) (*Relay, error) {
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("netimpair: listen: %w", err)
	}
	back, err := net.DialUDP("udp4", nil, target)
	if err != nil {
		_ = front.Close()
		return nil, fmt.Errorf("netimpair: dial %s: %w", target, err)
	}
	for _, c := range []*net.UDPConn{front, back} {
		// Bursts of a keyframe's packets must wait in the link's queue, not in the kernel's.
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
	}
	r := &Relay{front: front, back: back,
		up:   &direction{shaper: newShaper(1), queue: make(chan timed, queueLen)},
		down: &direction{shaper: newShaper(2), queue: make(chan timed, queueLen)}}
	r.readers.Go(func() { r.read(r.front, r.up, true) })
	r.readers.Go(func() { r.read(r.back, r.down, false) })
	r.senders.Go(func() { r.deliver(r.up, r.toTarget) })
	r.senders.Go(func() { r.deliver(r.down, r.toClient) })
	return r, nil
}

// Addr is where the client must send: the address to give it instead of the target's.
func (r *Relay) Addr() *net.UDPAddr { return r.front.LocalAddr().(*net.UDPAddr) }

// SetDown changes the target → client link (media toward a viewer), effective for the next
// datagram.
func (r *Relay) SetDown(l Link) { r.down.set(l) }

// SetUp changes the client → target link (a viewer's feedback).
func (r *Relay) SetUp(l Link) { r.up.set(l) }

// Down and Up return the counters of each direction.
func (r *Relay) Down() Counters { return r.down.counters() }

// Up returns the client → target counters.
func (r *Relay) Up() Counters { return r.up.counters() }

// Close stops the relay and waits for its goroutines; it is idempotent.
func (r *Relay) Close() error {
	var err error
	r.once.Do(func() {
		err = errors.Join(r.front.Close(), r.back.Close())
		r.readers.Wait() // nothing queues any more
		close(r.up.queue)
		close(r.down.queue)
	})
	r.senders.Wait()
	return err
}

func (d *direction) set(l Link) {
	d.mu.Lock()
	d.shaper.set(l)
	d.mu.Unlock()
}

func (d *direction) counters() Counters {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}

// read takes datagrams from c and queues each for delivery at the time its link says.
func (r *Relay) read(c *net.UDPConn, d *direction, fromClient bool) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		if fromClient {
			r.client.Store(&from)
		}
		d.mu.Lock()
		v, at := d.shaper.admit(n, time.Now())
		switch v {
		case Lost:
			d.c.Lost++
		case Overflow:
			d.c.Overflow++
		}
		d.mu.Unlock()
		if v != Pass {
			continue
		}
		select {
		case d.queue <- timed{at: at, pkt: append([]byte(nil), buf[:n]...)}:
		default:
			d.mu.Lock()
			d.c.Overflow++
			d.mu.Unlock()
		}
	}
}

// deliver sends each queued datagram when its time comes, until the queue is closed.
func (r *Relay) deliver(d *direction, send func([]byte) error) {
	for p := range d.queue {
		if wait := time.Until(p.at); wait > 0 {
			time.Sleep(wait)
		}
		if send(p.pkt) != nil {
			continue // closing, or the client is gone
		}
		d.mu.Lock()
		d.c.Passed++
		d.c.PassedBytes += uint64(len(p.pkt))
		d.mu.Unlock()
	}
}

func (r *Relay) toTarget(p []byte) error {
	_, err := r.back.Write(p)
	return err
}

func (r *Relay) toClient(p []byte) error {
	to := r.client.Load()
	if to == nil {
		return errors.New("netimpair: no client yet")
	}
	_, err := r.front.WriteToUDPAddrPort(p, *to)
	return err
}
