package rtc

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// wire is what a test saw arrive on the edge's socket: the SRTP of one SSRC and who sent it.
type wire struct {
	mu   sync.Mutex
	ssrc uint32
	pkts [][]byte
	from netip.AddrPort
}

func (w *wire) see(b []byte, from netip.AddrPort) {
	if len(b) < 12 || b[0]>>6 != 2 || b[1]&0x7f >= 64 && b[1]&0x7f < 96 { // RTP only (RFC 5761)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ssrc != 0 && binary.BigEndian.Uint32(b[8:12]) == w.ssrc {
		w.pkts = append(w.pkts, bytes.Clone(b))
		w.from = from
	}
}

func (w *wire) packets() ([][]byte, netip.AddrPort) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pkts, w.from
}

// keyedPair is a pion peer (the offerer, a WHIP client's role) connected to a PeerConnection
// of the edge's keyed API, both on loopback; the peer sends video, the node has a video
// track of its own to send on the same transceiver.
type keyedPair struct {
	edge       *Edge
	keys       *SRTPKeys
	node, peer *webrtc.PeerConnection
	peerTrack  *webrtc.TrackLocalStaticRTP
	nodeSender *webrtc.RTPSender
	peerGot    chan *webrtc.TrackRemote
}

func newKeyedPair(t *testing.T, peerSettings func(*webrtc.SettingEngine)) *keyedPair {
	t.Helper()
	edge, err := NewEdge(Config{UDPListen: "127.0.0.1:0", BWE: BWEConfig{Off: true}})
	require.NoError(t, err)
	p := &keyedPair{edge: edge, keys: &SRTPKeys{}, peerGot: make(chan *webrtc.TrackRemote, 1)}
	t.Cleanup(func() { require.NoError(t, edge.Close()) })
	api, err := edge.keyedAPI(p.keys, nil, nil)
	require.NoError(t, err)
	p.node, err = api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	p.peer, err = peerAPI(peerSettings).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, p.peer.Close())
		require.NoError(t, p.node.Close())
	})
	p.peerTrack, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "v", "s")
	require.NoError(t, err)
	_, err = p.peer.AddTrack(p.peerTrack)
	require.NoError(t, err)
	p.peer.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { p.peerGot <- tr })
	nodeTrack, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "n", "n")
	require.NoError(t, err)
	p.nodeSender, err = p.node.AddTrack(nodeTrack)
	require.NoError(t, err)
	return p
}

// connect offers from the peer, answers from the node and waits until both are connected.
func (p *keyedPair) connect(t *testing.T) {
	t.Helper()
	connected := func(pc *webrtc.PeerConnection) chan struct{} {
		c := make(chan struct{})
		var once sync.Once
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			if s == webrtc.PeerConnectionStateConnected {
				once.Do(func() { close(c) })
			}
		})
		return c
	}
	nodeUp, peerUp := connected(p.node), connected(p.peer)
	offer, err := p.peer.CreateOffer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(p.peer)
	require.NoError(t, p.peer.SetLocalDescription(offer))
	<-gathered
	require.NoError(t, p.node.SetRemoteDescription(*p.peer.LocalDescription()))
	answer, err := p.node.CreateAnswer(nil)
	require.NoError(t, err)
	gathered = webrtc.GatheringCompletePromise(p.node)
	require.NoError(t, p.node.SetLocalDescription(answer))
	<-gathered
	require.NoError(t, p.peer.SetRemoteDescription(*p.node.LocalDescription()))
	for _, c := range []chan struct{}{nodeUp, peerUp} {
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatal("not connected")
		}
	}
}

// peerSSRC is the SSRC the peer sends its video with.
func (p *keyedPair) peerSSRC(t *testing.T) uint32 {
	for _, tr := range p.peer.GetTransceivers() {
		if s := tr.Sender(); s != nil && s.Track() == p.peerTrack {
			return uint32(s.GetParameters().Encodings[0].SSRC)
		}
	}
	t.Fatal("the peer sends no video")
	return 0
}

// peerAPI is a plain pion API on loopback, a WHIP client's.
func peerAPI(settings func(*webrtc.SettingEngine)) *webrtc.API {
	var se webrtc.SettingEngine
	if settings != nil {
		settings(&se)
	}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

func testPacket(ssrc uint32, seq uint16, payload []byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq,
		Timestamp: 9000 * uint32(seq), SSRC: ssrc}, Payload: payload}
}

// The keys derived from the handshake's key log and ServerHello decrypt the SRTP a real pion
// peer sent the node, as it came off the edge's socket, and protect SRTP the peer accepts;
// a wrong key fails authentication.
// Each SRTP profile and PRF hash the peer may make the node choose.
func TestSRTPKeysFromTheHandshake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		profile dtls.SRTPProtectionProfile
		suite   dtls.CipherSuiteID
	}{
		{"defaults", 0, 0},
		{"aes128cm-sha256", dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{"aead128gcm-sha384", dtls.SRTP_AEAD_AES_128_GCM, dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testSRTPKeys(t, func(se *webrtc.SettingEngine) {
				if tc.profile != 0 {
					se.SetSRTPProtectionProfiles(tc.profile)
					se.SetDTLSCipherSuites(tc.suite)
				}
			})
			if tc.profile != 0 {
				p.keys.mu.Lock()
				defer p.keys.mu.Unlock()
				require.Equal(t, tc.suite, p.keys.suite)
				require.Equal(t, srtp.ProtectionProfile(tc.profile), p.keys.profile)
			}
		})
	}
}

func testSRTPKeys(t *testing.T, peerSettings func(*webrtc.SettingEngine)) *keyedPair {
	p := newKeyedPair(t, peerSettings)
	_, err := p.keys.Keying()
	require.ErrorIs(t, err, ErrNoSRTPKeys, "nothing known before the handshake")
	w := &wire{}
	tap := w.see
	p.edge.conn.tap.Store(&tap)
	p.connect(t)
	w.mu.Lock()
	w.ssrc = p.peerSSRC(t)
	w.mu.Unlock()

	keying, err := p.keys.Keying()
	require.NoError(t, err)
	t.Logf("profile %v", keying.Profile)

	// The peer sends; the node's keys open what the socket read.
	payload := []byte("a frame from the peer, sent through pion's SRTP")
	var pkts [][]byte
	var from netip.AddrPort
	seq := uint16(7)
	require.Eventually(t, func() bool {
		seq++
		require.NoError(t, p.peerTrack.WriteRTP(testPacket(0, seq, payload)))
		pkts, from = w.packets()
		return len(pkts) >= 3
	}, 5*time.Second, 20*time.Millisecond)
	dec, err := keying.PeerContext()
	require.NoError(t, err)
	for _, enc := range pkts {
		var h rtp.Header
		out, err := dec.DecryptRTP(nil, enc, &h)
		require.NoError(t, err)
		var got rtp.Packet
		require.NoError(t, got.Unmarshal(out))
		require.Equal(t, payload, got.Payload)
		require.Equal(t, w.ssrc, got.SSRC)
	}
	_, err = dec.DecryptRTP(nil, pkts[0], &rtp.Header{})
	require.Error(t, err, "a replayed packet is refused")

	// A wrong key: authentication fails, with an error that says so.
	bad := keying
	bad.ClientKey = bytes.Clone(keying.ClientKey)
	bad.ClientKey[0] ^= 1
	wrong, err := bad.PeerContext()
	require.NoError(t, err)
	_, err = wrong.DecryptRTP(nil, pkts[1], &rtp.Header{})
	require.ErrorContains(t, err, "auth")

	// The node sends with its own keys, straight through the socket: the peer's pion opens it.
	enc, err := keying.NodeContext()
	require.NoError(t, err)
	nodeSSRC := uint32(p.nodeSender.GetParameters().Encodings[0].SSRC)
	sent := []byte("a frame the node protected itself")
	var got *webrtc.TrackRemote
	seq = 100
	require.Eventually(t, func() bool {
		seq++
		raw, err := testPacket(nodeSSRC, seq, sent).Marshal()
		require.NoError(t, err)
		out, err := enc.EncryptRTP(nil, raw, nil)
		require.NoError(t, err)
		_, err = p.edge.conn.WriteToAddrPort(out, from)
		require.NoError(t, err)
		select {
		case got = <-p.peerGot:
			return true
		default:
			return false
		}
	}, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, got.SetReadDeadline(time.Now().Add(5*time.Second)))
	pkt, _, err := got.ReadRTP()
	require.NoError(t, err)
	require.Equal(t, sent, pkt.Payload)
	require.Equal(t, nodeSSRC, pkt.SSRC)
	return p
}

// Key-log lines arrive whole or in pieces; other labels are ignored, a malformed
// CLIENT_RANDOM is an error and teaches nothing.
func TestSRTPKeysKeyLog(t *testing.T) {
	cr := strings.Repeat("ab", 32)
	ms := strings.Repeat("cd", 48)
	for _, tc := range []struct {
		name   string
		writes []string
		err    bool
		logged bool
	}{
		{"whole", []string{"CLIENT_RANDOM " + cr + " " + ms + "\n"}, false, true},
		{"pieces", []string{"CLIENT_RAN", "DOM " + cr + " " + ms[:10], ms[10:] + "\n"}, false, true},
		{"no newline yet", []string{"CLIENT_RANDOM " + cr + " " + ms}, false, false},
		{"other label", []string{"SERVER_HANDSHAKE_TRAFFIC_SECRET " + cr + " " + ms + "\n"}, false, false},
		{"short random", []string{"CLIENT_RANDOM abcd " + ms + "\n"}, true, false},
		{"not hex", []string{"CLIENT_RANDOM " + strings.Repeat("zz", 32) + " " + ms + "\n"}, true, false},
		{"short secret", []string{"CLIENT_RANDOM " + cr + " abcd\n"}, true, false},
		{"endless line", []string{strings.Repeat("x", 5000)}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &SRTPKeys{}
			var err error
			for _, w := range tc.writes {
				if _, e := k.Write([]byte(w)); e != nil {
					err = e
				}
			}
			require.Equal(t, tc.err, err != nil, "%v", err)
			require.Equal(t, tc.logged, k.logged)
			_, err = k.Keying()
			require.ErrorIs(t, err, ErrNoSRTPKeys, "no ServerHello seen")
		})
	}
}
