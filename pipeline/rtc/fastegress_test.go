package rtc

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// A fast-egress viewer gets the node's RTP protected by the edge itself, each packet once and
// in order, with the payload it was written with, through the interceptors before it: the
// sender reports the viewer gets count what the fast path sent. With the flag off pion's path
// is taken and the fast path counts nothing.
func TestFastEgressViewer(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(map[bool]string{true: "fast", false: "pion"}[fast], func(t *testing.T) {
			edge, err := NewEdge(Config{UDPListen: "127.0.0.1:0", BWE: BWEConfig{Off: true}, FastEgress: fast})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, edge.Close()) })
			node, err := edge.NewViewer()
			require.NoError(t, err)
			p := &keyedPair{edge: edge, node: node, peerGot: make(chan *webrtc.TrackRemote, 1)}
			p.peer, err = peerAPI(nil).NewPeerConnection(webrtc.Configuration{})
			require.NoError(t, err)
			t.Cleanup(func() {
				require.NoError(t, p.peer.Close())
				require.NoError(t, node.Close())
			})
			_, err = p.peer.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
				webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
			require.NoError(t, err)
			p.peer.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { p.peerGot <- tr })
			track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "v", "s")
			require.NoError(t, err)
			_, err = node.AddTrack(track)
			require.NoError(t, err)
			p.connect(t)

			// Written until the peer's track shows up (its first packet), then 200 more.
			seq := uint16(65400) // the sequence wraps on the way: the context's rollover count follows
			write := func() {
				seq++
				require.NoError(t, track.WriteRTP(testPacket(0, seq, []byte{byte(seq), byte(seq >> 8), 7, 7})))
			}
			var got *webrtc.TrackRemote
			require.Eventually(t, func() bool {
				write()
				select {
				case got = <-p.peerGot:
					return true
				default:
					return false
				}
			}, 5*time.Second, 10*time.Millisecond)
			var mu sync.Mutex
			var seqs []uint16
			var bad int
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					pkt, _, err := got.ReadRTP()
					if err != nil {
						return
					}
					mu.Lock()
					seqs = append(seqs, pkt.SequenceNumber)
					if len(pkt.Payload) != 4 || pkt.Payload[0] != byte(pkt.SequenceNumber) || pkt.Payload[1] != byte(pkt.SequenceNumber>>8) {
						bad++
					}
					mu.Unlock()
				}
			}()
			const more = 200
			first := seq + 1
			for range more {
				write()
				time.Sleep(time.Millisecond)
			}
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(seqs) > 0 && seqs[len(seqs)-1] == seq
			}, 5*time.Second, 10*time.Millisecond)
			mu.Lock()
			require.Zero(t, bad, "payloads as written")
			i := 0
			for i < len(seqs) && seqs[i] != first {
				i++
			}
			require.Len(t, seqs[i:], more, "each packet once, none lost on loopback")
			for k, s := range seqs[i:] {
				require.Equal(t, first+uint16(k), s)
			}
			mu.Unlock()
			if fast {
				require.GreaterOrEqual(t, edge.FastEgressStats().Packets, uint64(more))
			} else {
				require.Zero(t, edge.FastEgressStats().Packets)
			}
			require.Zero(t, edge.FastEgressStats().Failed)

			// The viewer's sender reports count the packets the fast path sent.
			require.Eventually(t, func() bool {
				rtcps, _, err := p.peer.GetReceivers()[0].ReadRTCP()
				require.NoError(t, err)
				for _, pkt := range rtcps {
					if sr, ok := pkt.(*rtcp.SenderReport); ok && sr.PacketCount >= more {
						return true
					}
				}
				return false
			}, 10*time.Second, time.Millisecond, "a sender report counting the packets")
			require.NoError(t, p.peer.Close())
			<-done
		})
	}
}

// Until the session's keys are known, or with no selected pair, a packet takes pion's path.
func TestFastEgressBeforeKeys(t *testing.T) {
	edge, err := NewEdge(Config{UDPListen: "127.0.0.1:0", BWE: BWEConfig{Off: true}, FastEgress: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, edge.Close()) })
	f := &FastEgress{conn: edge.conn, keys: &SRTPKeys{}, counts: &edge.fastEgress}
	next := &countingWriter{}
	h := testPacket(1, 1, []byte{1}).Header
	_, err = f.write(&h, []byte{1}, nil, next)
	require.NoError(t, err)
	require.Equal(t, 1, next.n, "no keys: pion's path")
	f.route = netip.MustParseAddrPort("127.0.0.1:9")
	_, err = f.write(&h, []byte{1}, nil, next)
	require.NoError(t, err)
	require.Equal(t, 2, next.n, "a route but no keys: pion's path")
	require.Zero(t, edge.FastEgressStats().Packets)
}

// countingWriter counts the packets written to it.
type countingWriter struct{ n int }

func (w *countingWriter) Write(*rtp.Header, []byte, interceptor.Attributes) (int, error) {
	w.n++
	return 0, nil
}
