package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

func testOffer(audio bool) liteOffer {
	return liteOffer{ufrag: "viewerufrag12345", pwd: "viewerpasswordviewerpasswo", fingerprint: "AB:CD:EF",
		cand: netip.MustParseAddrPort("127.0.0.7:40000"), audio: audio, sessionID: 42}
}

func TestLiteOffer(t *testing.T) {
	for _, audio := range []bool{true, false} {
		var sd sdp.SessionDescription
		require.NoError(t, sd.UnmarshalString(testOffer(audio).sdp()))
		bundle, _ := sd.Attribute("group")
		mids := []string{"0"}
		if audio {
			mids = append(mids, "1")
		}
		require.Equal(t, "BUNDLE "+strings.Join(mids, " "), bundle)
		require.Len(t, sd.MediaDescriptions, len(mids))
		for i, md := range sd.MediaDescriptions {
			mid, _ := md.Attribute("mid")
			require.Equal(t, mids[i], mid)
			for _, want := range []string{"rtcp-mux", "recvonly", "end-of-candidates"} {
				_, ok := md.Attribute(want)
				require.True(t, ok, want)
			}
			setup, _ := md.Attribute("setup")
			require.Equal(t, "actpass", setup)
			fp, _ := md.Attribute("fingerprint")
			require.Equal(t, "sha-256 AB:CD:EF", fp)
			c, _ := md.Attribute("candidate")
			got, ok := parseHostCandidate(c)
			require.True(t, ok)
			require.Equal(t, netip.MustParseAddrPort("127.0.0.7:40000"), got)
		}
		require.Equal(t, []string{"96"}, sd.MediaDescriptions[0].MediaName.Formats)
		if audio {
			require.Equal(t, "audio", sd.MediaDescriptions[1].MediaName.Media)
			require.Equal(t, []string{"111"}, sd.MediaDescriptions[1].MediaName.Formats)
		}
	}
}

// TestLiteOfferPionAnswer has a real pion PeerConnection, as the server is, answer the lite
// offer, and reads that answer.
func TestLiteOfferPionAnswer(t *testing.T) {
	api, err := newAPI(true, false, false)
	require.NoError(t, err)
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	defer pc.Close()
	pub, err := newPublisher("r", "", true, false)
	require.NoError(t, err)
	for _, tr := range pub.tracks() {
		_, err := pc.AddTrack(tr)
		require.NoError(t, err)
	}
	cert := testCertDER(t)
	o := testOffer(true)
	o.fingerprint = certFingerprint(cert)
	require.NoError(t, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o.sdp()}))
	answer, err := pc.CreateAnswer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(pc)
	require.NoError(t, pc.SetLocalDescription(answer))
	<-gathered

	a, err := parseLiteAnswer(pc.LocalDescription().SDP)
	require.NoError(t, err)
	require.False(t, a.dtlsClient, "pion answers actpass with active: it is the DTLS client")
	require.NotEmpty(t, a.ufrag)
	require.GreaterOrEqual(t, len(a.pwd), 22)
	require.Len(t, a.fingerprint, 95, "sha-256 as 32 hex pairs")
	require.Equal(t, litePTVP8, a.videoPT)
	require.Equal(t, litePTOpus, a.audioPT)
	require.NotZero(t, a.videoSSRC)
	require.NotZero(t, a.audioSSRC)
	require.NotEqual(t, a.videoSSRC, a.audioSSRC)
	require.NotEmpty(t, a.cands)
	require.True(t, a.pickCandidate(true, netip.Addr{}).Addr().IsLoopback())
}

// testCertDER is a DER certificate for fingerprint tests.
func testCertDER(t *testing.T) []byte {
	t.Helper()
	h, err := newLiteHub("http://127.0.0.1:1", &latencies{})
	require.NoError(t, err)
	return h.cert.Certificate[0]
}

func TestParseLiteAnswer(t *testing.T) {
	const base = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:srvU\r\n" +
		"a=ice-pwd:serverpasswordserverpass\r\na=fingerprint:sha-256 AA:BB\r\na=setup:SETUP\r\n" +
		"a=rtpmap:96 VP8/90000\r\na=ssrc:1111 cname:x\r\na=sendonly\r\n" +
		"a=candidate:1 1 udp 2130706431 ::1 5000 typ host\r\n" +
		"a=candidate:2 1 udp 2130706431 10.0.0.1 5000 typ host\r\n" +
		"a=candidate:3 1 udp 2130706431 127.0.0.1 5000 typ host\r\n" +
		"a=candidate:4 1 udp 1694498815 1.2.3.4 5000 typ srflx raddr 0.0.0.0 rport 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n" +
		"a=ssrc:2222 cname:x\r\na=sendonly\r\n"
	for _, tc := range []struct {
		name, from, to string
		want           string // error, or "" for a good answer
		client         bool
	}{
		{"active: server is the DTLS client", "SETUP", "active", "", false},
		{"passive: we are", "SETUP", "passive", "", true},
		{"actpass is no answer", "SETUP", "actpass", "setup \"actpass\"", false},
		{"no credentials", "a=ice-ufrag:srvU\r\n", "", "no ice-ufrag", false},
		{"no fingerprint", "a=fingerprint:sha-256 AA:BB\r\n", "a=fingerprint:sha-1 AA:BB\r\n", "no sha-256 fingerprint", false},
		{"IPv6 and srflx candidates only", "a=candidate:2 1 udp 2130706431 10.0.0.1 5000 typ host\r\na=candidate:3 1 udp 2130706431 127.0.0.1 5000 typ host\r\n", "", "no UDP IPv4 host candidate", false},
		{"video rejected", "m=video 9", "m=video 0", "video (VP8) not accepted", false},
		{"not SDP", "v=0", "x=1", "unusable WHEP answer", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(base, tc.from, tc.to, 1)
			text = strings.Replace(text, "SETUP", "active", 1)
			a, err := parseLiteAnswer(text)
			if tc.want != "" {
				require.ErrorIs(t, err, errBadAnswer)
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.client, a.dtlsClient)
			require.Equal(t, iceCreds{"srvU", "serverpasswordserverpass"}, iceCreds{a.ufrag, a.pwd})
			require.Equal(t, "AA:BB", a.fingerprint)
			require.Equal(t, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:5000"), netip.MustParseAddrPort("127.0.0.1:5000")}, a.cands)
			require.Equal(t, uint32(1111), a.videoSSRC)
			require.Equal(t, uint32(2222), a.audioSSRC)
			require.Equal(t, 96, a.videoPT)
			require.Equal(t, 111, a.audioPT)
			require.Equal(t, netip.MustParseAddrPort("127.0.0.1:5000"), a.pickCandidate(true, netip.Addr{}))
			require.Equal(t, netip.MustParseAddrPort("10.0.0.1:5000"), a.pickCandidate(false, netip.MustParseAddr("10.0.0.1")))
			require.Equal(t, netip.MustParseAddrPort("10.0.0.1:5000"), a.pickCandidate(false, netip.MustParseAddr("192.168.1.1")))
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want datagramKind
	}{
		{nil, kindOther},
		{[]byte{0x00, 0x01}, kindSTUN},
		{[]byte{0x01, 0x01}, kindSTUN},
		{[]byte{3}, kindSTUN},
		{[]byte{4}, kindOther},
		{[]byte{20, 0xfe}, kindDTLS}, // change cipher spec
		{[]byte{22, 0xfe}, kindDTLS}, // handshake
		{[]byte{23, 0xfe}, kindDTLS}, // application data
		{[]byte{63}, kindDTLS},
		{[]byte{64}, kindOther},
		{[]byte{0x80, 96}, kindRTP},        // VP8
		{[]byte{0x80, 0x80 | 96}, kindRTP}, // VP8, marker
		{[]byte{0x80, 111}, kindRTP},       // Opus
		{[]byte{0x80, 200}, kindRTCP},      // SR
		{[]byte{0x81, 201}, kindRTCP},      // RR
		{[]byte{0x81, 205}, kindRTCP},      // generic NACK
		{[]byte{0x81, 206}, kindRTCP},      // PLI
		{[]byte{0x80, 224}, kindRTP},       // marker + PT 96+... not RTCP's range
		{[]byte{0x80}, kindRTP},            // too short to tell: RTP, which then fails to parse
		{[]byte{0xc0, 96}, kindOther},      // 192: outside RTP's range
		{[]byte{0xff, 96}, kindOther},
	} {
		require.Equal(t, tc.want, classify(tc.b), "% x", tc.b)
	}
}

func TestNackTracker(t *testing.T) {
	ms := func(n int) int64 { return int64(n) * int64(time.Millisecond) }
	type step struct {
		at   int      // ms
		recv []uint16 // packets received at that time
		due  []uint16 // what to ask for then
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"in order: nothing", []step{{0, []uint16{1, 2, 3}, nil}, {100, nil, nil}}},
		{"gap asked at once, again every 20 ms, three times", []step{
			{0, []uint16{1, 2, 5}, []uint16{3, 4}},
			{10, nil, nil},
			{20, nil, []uint16{3, 4}},
			{40, []uint16{6}, []uint16{3, 4}},
			{60, nil, nil},
			{1000, nil, nil},
		}},
		{"retransmission fills the gap", []step{
			{0, []uint16{1, 4}, []uint16{2, 3}},
			{5, []uint16{3}, nil},
			{20, nil, []uint16{2}},
			{21, []uint16{2}, nil},
			{60, nil, nil},
		}},
		{"gaps forgotten after a second", []step{
			{0, []uint16{1, 3}, []uint16{2}},
			{1001, nil, nil},
		}},
		{"wraps", []step{{0, []uint16{65534, 65535, 1}, []uint16{0}}}},
		{"a jump is a restart, not loss", []step{{0, []uint16{1, 2000}, nil}, {20, []uint16{2002}, []uint16{2001}}}},
		{"late and reordered packets are not gaps", []step{{0, []uint16{10, 8, 9, 11}, nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr nackTracker
			for _, s := range tc.steps {
				for _, seq := range s.recv {
					tr.received(seq, ms(s.at))
				}
				got := tr.due(ms(s.at), nil)
				require.Equal(t, s.due, got, "at %d ms", s.at)
			}
		})
	}
	var tr nackTracker
	require.False(t, tr.received(1, 0))
	require.True(t, tr.received(3, 0), "a new gap")
	require.False(t, tr.received(2, 0))
	require.False(t, tr.pending())
}

func TestRRStats(t *testing.T) {
	var r rrStats
	for _, seq := range []uint16{65530, 65531, 65533, 65535, 0, 1} { // 65532 and 65534 lost
		r.add(seq, 0, 0)
	}
	rep := r.report(7)
	require.Equal(t, uint32(7), rep.SSRC)
	require.Equal(t, uint32(1<<16|1), rep.LastSequenceNumber)
	require.Equal(t, uint32(2), rep.TotalLost)
	require.Equal(t, uint8(2*256/8), rep.FractionLost)
	r.add(2, 0, 0)
	rep = r.report(7)
	require.Zero(t, rep.FractionLost, "the second interval lost nothing")
	require.Equal(t, uint32(2), rep.TotalLost)

	// Jitter: packets 20 ms apart on the RTP clock arriving alternately 0 and 10 ms late.
	var j rrStats
	for i := range 200 {
		late := int64(0)
		if i%2 == 1 {
			late = 900
		}
		j.add(uint16(i), uint32(i*1800), int64(i*1800)+late)
	}
	require.InDelta(t, 900, j.report(1).Jitter, 10)
}

func TestHandleSTUN(t *testing.T) {
	viewer := iceCreds{"viewerufrag12345", "viewerpasswordviewerpass"}
	server := iceCreds{"srvU", "serverpasswordserverpass"}
	from := netip.MustParseAddrPort("127.0.0.1:5000")

	// The server's check of the viewer: answered with the viewer's integrity and its address.
	req, err := bindingRequest(server, viewer, 7)
	require.NoError(t, err)
	rep, err := handleSTUN(req.Raw, from, viewer, server)
	require.NoError(t, err)
	require.False(t, rep.succeeded)
	resp := &stun.Message{Raw: rep.response}
	require.NoError(t, resp.Decode())
	require.Equal(t, stun.BindingSuccess, resp.Type)
	require.Equal(t, req.TransactionID, resp.TransactionID)
	require.NoError(t, stun.NewShortTermIntegrity(viewer.pwd).Check(resp))
	require.NoError(t, stun.Fingerprint.Check(resp))
	var xor stun.XORMappedAddress
	require.NoError(t, xor.GetFrom(resp))
	require.Equal(t, "127.0.0.1:5000", xor.String())

	// The viewer's check of the server, answered: a success when the server's integrity holds.
	ours, err := bindingRequest(viewer, server, 9)
	require.NoError(t, err)
	var u stun.Username
	require.NoError(t, u.GetFrom(ours))
	require.Equal(t, "srvU:viewerufrag12345", u.String())
	require.True(t, ours.Contains(stun.AttrUseCandidate))
	require.True(t, ours.Contains(stun.AttrICEControlling))
	serverResp, err := handleSTUN(ours.Raw, from, server, viewer)
	require.NoError(t, err)
	got, err := handleSTUN(serverResp.response, from, viewer, server)
	require.NoError(t, err)
	require.True(t, got.succeeded)
	require.Nil(t, got.response)

	_, err = handleSTUN(serverResp.response, from, viewer, iceCreds{"srvU", "notthepasswordnotthepass"})
	require.ErrorContains(t, err, "response integrity")
	_, err = handleSTUN(req.Raw, from, iceCreds{"other", viewer.pwd}, server)
	require.ErrorIs(t, err, errSTUNIgnored, "a check for another ufrag")
	_, err = handleSTUN(req.Raw, from, iceCreds{viewer.ufrag, "notthepasswordnotthepass"}, server)
	require.ErrorContains(t, err, "request integrity")
	_, err = handleSTUN(serverResp.response, from, viewer, iceCreds{})
	require.ErrorIs(t, err, errSTUNIgnored, "no answer read yet")
	_, err = handleSTUN([]byte{0, 1, 0, 0}, from, viewer, server)
	require.Error(t, err)
}

func TestLoopbackAddr(t *testing.T) {
	seen := map[netip.Addr]bool{}
	for i := range 3 * 253 * 256 {
		a := loopbackAddr(i)
		require.True(t, a.IsLoopback(), a)
		b := a.As4()
		require.True(t, b[3] >= 2 && b[3] <= 254, a)
		require.False(t, seen[a], "%s twice", a)
		seen[a] = true
	}
	require.Equal(t, netip.MustParseAddr("127.0.0.2"), loopbackAddr(0))
	require.Equal(t, netip.MustParseAddr("127.0.1.2"), loopbackAddr(253))
}

// hotViewer is a lite viewer with keys and an answer, as after its handshake, and packets
// encrypted for it: what the socket reader's per-packet path works on.
func hotViewer(tb testing.TB, profile srtp.ProtectionProfile) (*liteViewer, [][]byte) {
	keyLen, err := profile.KeyLen()
	require.NoError(tb, err)
	saltLen, err := profile.SaltLen()
	require.NoError(tb, err)
	key, salt := make([]byte, keyLen), make([]byte, saltLen)
	for i := range key {
		key[i] = byte(i)
	}
	recv, err := srtp.CreateContext(key, salt, profile, srtp.SRTPNoReplayProtection())
	require.NoError(tb, err)
	send, err := srtp.CreateContext(key, salt, profile)
	require.NoError(tb, err)
	h := &liteHub{lat: &latencies{}}
	h.lat.measuring.Store(true)
	pub, err := newPublisher("r", "", true, false)
	require.NoError(tb, err)
	v := newLiteViewer(h, pub, "")
	v.remote.Store(&liteRemote{videoSSRC: 1234, audioSSRC: 5678, videoPT: 96, audioPT: 111})
	v.keys.Store(&liteKeys{recv: recv, send: send})

	pkts := make([][]byte, 1024)
	payload := make([]byte, 1190)
	for i := range pkts {
		putProbe(payload, time.Now().UnixNano(), uint32(i))
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i / 7 * 3000),
			SSRC: 1234, Marker: i%7 == 6}, Payload: payload}
		raw, err := p.Marshal()
		require.NoError(tb, err)
		pkts[i], err = send.EncryptRTP(nil, raw, nil)
		require.NoError(tb, err)
	}
	return v, pkts
}

// srtpProfiles are the profiles the lite viewer offers, by name.
func srtpProfiles() map[string]srtp.ProtectionProfile {
	return map[string]srtp.ProtectionProfile{
		"gcm":  srtp.ProtectionProfileAeadAes128Gcm,
		"cm80": srtp.ProtectionProfileAes128CmHmacSha1_80,
	}
}

// TestLiteHotPath decrypts and records packets as the socket reader does: each is counted
// once, video, with its latency, and without allocating.
func TestLiteHotPath(t *testing.T) {
	for name, profile := range srtpProfiles() {
		t.Run(name, func(t *testing.T) {
			v, pkts := hotViewer(t, profile)
			var hdr rtp.Header
			buf := make([]byte, 1500)
			for _, p := range pkts[:100] {
				n := copy(buf, p)
				now := time.Now()
				require.False(t, v.onRTP(buf[:n], now.Add(-5*time.Millisecond), now, &hdr))
			}
			require.Equal(t, uint64(100), v.rec.video.got.packets.Load())
			require.Zero(t, v.rec.audio.got.packets.Load())
			require.Equal(t, uint64(100), v.hub.lat.arrival.Count())
			require.Equal(t, uint64(100), v.hub.lat.read.Count())
			// Arrival 5 ms before the read: the read latencies are longer.
			require.Greater(t, v.hub.lat.read.Quantile(0.5), v.hub.lat.arrival.Quantile(0.5))
			require.NotZero(t, v.rec.firstVideo.Load())

			// A gap: packet 101 lost, 102 opens it.
			n := copy(buf, pkts[101])
			require.True(t, v.onRTP(buf[:n], time.Now(), time.Now(), &hdr), "a gap to NACK")
			require.Equal(t, []uint16{100}, v.video.nack.due(time.Now().UnixNano(), nil))

			// Tampered: dropped.
			n = copy(buf, pkts[102])
			buf[n-1] ^= 1
			v.onRTP(buf[:n], time.Now(), time.Now(), &hdr)
			require.Equal(t, uint64(101), v.rec.video.got.packets.Load())

			i := 103
			allocs := testing.AllocsPerRun(500, func() {
				n := copy(buf, pkts[i%len(pkts)])
				i++
				now := time.Now()
				v.onRTP(buf[:n], now, now, &hdr)
			})
			require.Zero(t, allocs)
		})
	}
}

// BenchmarkLiteHotPath is the socket reader's per-packet work: SRTP decryption in place, the
// RTP header, NACK and report bookkeeping, and the run's accounting.
func BenchmarkLiteHotPath(b *testing.B) {
	for _, name := range []string{"gcm", "cm80"} {
		b.Run(name, func(b *testing.B) {
			v, pkts := hotViewer(b, srtpProfiles()[name])
			var hdr rtp.Header
			buf := make([]byte, 1500)
			now := time.Now()
			b.ReportAllocs()
			b.SetBytes(int64(len(pkts[0])))
			i := 0
			for b.Loop() {
				n := copy(buf, pkts[i%len(pkts)])
				i++
				v.onRTP(buf[:n], now, now, &hdr)
			}
		})
	}
}

// pionWHEP is a WHEP endpoint backed by real pion PeerConnections that send pub's tracks,
// answering with DTLS role role. tamper, when set, rewrites each answer.
func pionWHEP(t *testing.T, pub *publisher, role webrtc.DTLSRole, tamper func(string) string) (*httptest.Server, *atomic.Int32) {
	return pionWHEPFeedback(t, pub, role, tamper, nil)
}

// pionWHEPFeedback is pionWHEP whose answers, when feedback is set, take transport-wide
// sequence numbers (pion numbers every packet sent) and hand every transport-wide feedback
// message its senders read to feedback.
func pionWHEPFeedback(t *testing.T, pub *publisher, role webrtc.DTLSRole, tamper func(string) string, feedback func(*rtcp.TransportLayerCC)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var se webrtc.SettingEngine
	require.NoError(t, se.SetAnsweringDTLSRole(role))
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	me := &webrtc.MediaEngine{}
	require.NoError(t, me.RegisterDefaultCodecs())
	ir := &interceptor.Registry{}
	if feedback != nil {
		require.NoError(t, webrtc.ConfigureTWCCHeaderExtensionSender(me, ir))
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir))
	var mu sync.Mutex
	pcs := map[string]*webrtc.PeerConnection{}
	deleted := &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodDelete {
			if pc := pcs[r.URL.Path]; pc != nil {
				_ = pc.Close()
				delete(pcs, r.URL.Path)
				deleted.Add(1)
			}
			return
		}
		offer, _ := io.ReadAll(r.Body)
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, tr := range pub.tracks() {
			sender, err := pc.AddTrack(tr)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if feedback != nil {
				go func() { // ends when the PeerConnection closes
					for {
						pkts, _, err := sender.ReadRTCP()
						if err != nil {
							return
						}
						for _, p := range pkts {
							if cc, ok := p.(*rtcp.TransportLayerCC); ok {
								feedback(cc)
							}
						}
					}
				}()
			}
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answer, err := pc.CreateAnswer(nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(answer); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		<-gathered
		loc := fmt.Sprintf("/whep/s/%d", len(pcs)+int(deleted.Load()))
		pcs[loc] = pc
		body := pc.LocalDescription().SDP
		if tamper != nil {
			body = tamper(body)
		}
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, pc := range pcs {
			_ = pc.Close()
		}
	})
	return srv, deleted
}

// TestLiteViewerPionPeer joins real pion PeerConnections, as the server's are, in both DTLS
// roles: media arrives on both tracks, the session is DELETEd, the socket's reader ends. A
// certificate that does not match the answer's fingerprint fails the join.
func TestLiteViewerPionPeer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		role   webrtc.DTLSRole
		tamper func(string) string
		err    string
	}{
		{"server is the DTLS client", webrtc.DTLSRoleClient, nil, ""},
		{"server is the DTLS server", webrtc.DTLSRoleServer, nil, ""},
		{"wrong fingerprint", webrtc.DTLSRoleClient, func(s string) string {
			i := strings.Index(s, "a=fingerprint:sha-256 ") + len("a=fingerprint:sha-256 ")
			flip := "0"
			if s[i] == '0' {
				flip = "1"
			}
			return strings.ReplaceAll(s, s[i:i+1]+s[i+1:i+95], flip+s[i+1:i+95])
		}, "answer says"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			pub, err := newPublisher("room", "", true, false)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			pub.wg.Go(func() { pub.send(ctx, 300_000, 30, 1200) })
			defer func() {
				cancel()
				pub.wg.Wait()
			}()
			srv, deleted := pionWHEP(t, pub, tc.role, tc.tamper)
			var lat latencies
			lat.measuring.Store(true)
			h, err := newLiteHub(srv.URL, &lat)
			require.NoError(t, err)
			hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer hcancel()
			v, err := h.startLiteViewer(hctx, srv.Client(), srv.URL, pub, "", true)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.Equal(t, int32(1), deleted.Load(), "the failed session is deleted")
				h.close()
				return
			}
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				return v.rec.video.got.packets.Load() > 20 && v.rec.audio.got.packets.Load() > 10
			}, 5*time.Second, 10*time.Millisecond)
			require.Positive(t, lat.arrival.Count())
			_, ok := joinTime(v)
			require.True(t, ok)
			v.close(srv.Client())
			require.Equal(t, int32(1), deleted.Load())
			h.close()
			require.Empty(t, h.sockets)
			cancel()
			pub.wg.Wait()
			srv.Close()
			require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, 5*time.Second, 20*time.Millisecond,
				"goroutines: %d before, %d after", before, runtime.NumGoroutine())
		})
	}
}

// TestLiteViewerTWCC: a lite viewer with twcc offers transport-cc, reads the extension id
// from a real pion answer and sends transport-wide feedback about the packets it got, as a
// browser does; without twcc it offers none and sends none.
func TestLiteViewerTWCC(t *testing.T) {
	for _, withTWCC := range []bool{true, false} {
		t.Run(fmt.Sprintf("twcc=%v", withTWCC), func(t *testing.T) {
			pub, err := newPublisher("room", "", true, false)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			pub.wg.Go(func() { pub.send(ctx, 300_000, 30, 1200) })
			defer func() {
				cancel()
				pub.wg.Wait()
			}()
			var mu sync.Mutex
			var messages, received int
			srv, _ := pionWHEPFeedback(t, pub, webrtc.DTLSRoleServer, nil, func(cc *rtcp.TransportLayerCC) {
				mu.Lock()
				defer mu.Unlock()
				messages++
				received += len(cc.RecvDeltas)
			})
			var lat latencies
			h, err := newLiteHub(srv.URL, &lat)
			require.NoError(t, err)
			defer h.close()
			h.twcc = withTWCC
			hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer hcancel()
			v, err := h.startLiteViewer(hctx, srv.Client(), srv.URL, pub, "", true)
			require.NoError(t, err)
			defer v.close(srv.Client())
			if !withTWCC {
				require.Zero(t, v.twccID)
				require.Eventually(t, func() bool { return v.rec.video.got.packets.Load() > 30 }, 5*time.Second, 10*time.Millisecond)
				time.Sleep(300 * time.Millisecond) // three feedback intervals: none may come
				mu.Lock()
				defer mu.Unlock()
				require.Zero(t, messages)
				return
			}
			require.NotZero(t, v.twccID, "the answer's transport-cc extension id")
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return messages >= 5 && received >= 30
			}, 5*time.Second, 10*time.Millisecond, "transport-wide feedback reaches the sender")
			mu.Lock()
			defer mu.Unlock()
			// Every packet the feedback says arrived is one the viewer got.
			got := int(v.rec.video.got.packets.Load() + v.rec.audio.got.packets.Load())
			require.LessOrEqual(t, received, got, "packets acknowledged %d, received %d", received, got)
		})
	}
}

// FuzzParseLiteAnswer: any text is an answer or an errBadAnswer, never a panic, and a
// usable answer has what the viewer needs.
func FuzzParseLiteAnswer(f *testing.F) {
	f.Add(testOffer(true).sdp())
	f.Add("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=ice-ufrag:u\r\na=ice-pwd:p\r\na=fingerprint:sha-256 AA\r\na=setup:active\r\na=rtpmap:96 VP8/90000\r\n" +
		"a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n")
	f.Add("a=candidate:1 1 udp 1 127.0.0.1 0 typ host")
	f.Fuzz(func(t *testing.T, text string) {
		a, err := parseLiteAnswer(text)
		if err != nil {
			require.ErrorIs(t, err, errBadAnswer)
			return
		}
		require.NotEmpty(t, a.cands)
		require.True(t, a.pickCandidate(true, netip.Addr{}).IsValid())
		require.GreaterOrEqual(t, a.videoPT, 0)
	})
}
