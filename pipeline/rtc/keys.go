package rtc

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// ErrNoSRTPKeys is what SRTPKeys.Keying returns before the session's DTLS handshake has
// given it everything the keys are derived from (or when the node was not the DTLS server).
var ErrNoSRTPKeys = errors.New("rtc: SRTP keys not known")

// SRTPKeys learns the SRTP keying material of one PeerConnection's DTLS handshake, which
// pion keeps to itself, from what its SettingEngine lets an application see: the NSS key-log
// line (client random, master secret) and the node's own ServerHello (server random, cipher
// suite, SRTP profile). The keys are RFC 5764's exporter of those. Bound to one
// PeerConnection (Bind on the SettingEngine of its own API): key-log lines of concurrent
// handshakes through one SettingEngine could not be told apart. The node must be the DTLS
// server, which Bind makes it when it answers.
type SRTPKeys struct {
	mu           sync.Mutex
	hello        bool
	serverRandom [handshake.RandomLength]byte
	suite        dtls.CipherSuiteID
	profile      srtp.ProtectionProfile
	logged       bool
	clientRandom [handshake.RandomLength]byte
	master       []byte
	line         []byte // a key-log line written in pieces, until its newline
}

// Bind makes se report the handshake to k and the node the DTLS server when it answers an
// offer (a WHIP or WHEP client offers, so the node answers; a browser offers actpass).
func (k *SRTPKeys) Bind(se *webrtc.SettingEngine) error {
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
		return fmt.Errorf("rtc: srtp keys: %w", err)
	}
	se.SetDTLSKeyLogWriter(k)
	se.SetDTLSServerHelloMessageHook(k.serverHello)
	return nil
}

// serverHello notes what the node's ServerHello chose and sends it unchanged.
func (k *SRTPKeys) serverHello(m handshake.MessageServerHello) handshake.Message {
	var profile srtp.ProtectionProfile
	for _, e := range m.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
			profile = srtp.ProtectionProfile(u.ProtectionProfiles[0])
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.serverRandom = m.Random.MarshalFixed()
	if m.CipherSuiteID != nil {
		k.suite = dtls.CipherSuiteID(*m.CipherSuiteID)
	}
	k.profile = profile
	k.hello = true
	return &m
}

// Write takes pion's key-log output: lines "CLIENT_RANDOM <client random> <master secret>"
// in hex. Other labels (TLS 1.3's) are ignored; a malformed CLIENT_RANDOM line is an error.
func (k *SRTPKeys) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.line = append(k.line, p...)
	for {
		i := bytes.IndexByte(k.line, '\n')
		if i < 0 {
			if len(k.line) > 4096 { // no key-log line is this long
				k.line = k.line[:0]
				return len(p), errors.New("rtc: srtp keys: key-log line too long")
			}
			return len(p), nil
		}
		line := k.line[:i]
		err := k.keyLogLine(line)
		k.line = k.line[:copy(k.line, k.line[i+1:])]
		if err != nil {
			return len(p), err
		}
	}
}

// keyLogLine parses one key-log line (under mu).
func (k *SRTPKeys) keyLogLine(line []byte) error {
	f := bytes.Fields(line)
	if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" {
		return nil
	}
	var cr [handshake.RandomLength]byte
	if n, err := hex.Decode(cr[:], f[1]); err != nil || n != len(cr) || len(f[1]) != 2*len(cr) {
		return fmt.Errorf("rtc: srtp keys: key-log client random %q", f[1])
	}
	master := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(master, f[2]); err != nil || len(master) != 48 {
		return fmt.Errorf("rtc: srtp keys: key-log master secret of %d hex digits", len(f[2]))
	}
	k.clientRandom, k.master, k.logged = cr, master, true
	return nil
}

// SRTPKeying is one session's SRTP master keys and salts (RFC 5764 4.2): the DTLS client's
// protect what the client sends, the server's what the server (the node) sends.
type SRTPKeying struct {
	Profile               srtp.ProtectionProfile
	ClientKey, ClientSalt []byte
	ServerKey, ServerSalt []byte
}

// exporterLabel is RFC 5764's label for the SRTP keying material.
const exporterLabel = "EXTRACTOR-dtls_srtp"

// Keying derives the session's SRTP keys: ErrNoSRTPKeys until its handshake has completed
// with the node as DTLS server.
func (k *SRTPKeys) Keying() (SRTPKeying, error) {
	k.mu.Lock()
	if !k.hello || !k.logged {
		// Asked for per packet by a FastEgress until the keys are known: nothing allocated.
		k.mu.Unlock()
		return SRTPKeying{}, ErrNoSRTPKeys
	}
	suite, profile := k.suite, k.profile
	seed := make([]byte, 0, len(exporterLabel)+2*handshake.RandomLength)
	seed = append(append(append(seed, exporterLabel...), k.clientRandom[:]...), k.serverRandom[:]...)
	master := k.master
	k.mu.Unlock()
	h, err := prfHash(suite)
	if err != nil {
		return SRTPKeying{}, err
	}
	keyLen, err := profile.KeyLen()
	if err != nil {
		return SRTPKeying{}, fmt.Errorf("rtc: srtp keys: profile %v: %w", profile, err)
	}
	saltLen, err := profile.SaltLen()
	if err != nil {
		return SRTPKeying{}, fmt.Errorf("rtc: srtp keys: profile %v: %w", profile, err)
	}
	m, err := prf.PHash(master, seed, 2*(keyLen+saltLen), h)
	if err != nil {
		return SRTPKeying{}, fmt.Errorf("rtc: srtp keys: exporter: %w", err)
	}
	return SRTPKeying{
		Profile:    profile,
		ClientKey:  m[:keyLen],
		ServerKey:  m[keyLen : 2*keyLen],
		ClientSalt: m[2*keyLen : 2*keyLen+saltLen],
		ServerSalt: m[2*keyLen+saltLen:],
	}, nil
}

// prfHash is the TLS 1.2 PRF hash of a cipher suite: SHA-384 for the *_SHA384 suites,
// SHA-256 for the others pion offers.
func prfHash(s dtls.CipherSuiteID) (func() hash.Hash, error) {
	switch s {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return sha512.New384, nil
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8:
		return sha256.New, nil
	}
	return nil, fmt.Errorf("rtc: srtp keys: cipher suite %s: unknown PRF hash", dtls.CipherSuiteName(s))
}

// replayWindow is the SRTP replay window of the node's own decrypting contexts, pion's.
const replayWindow = 64

// PeerContext decrypts (and authenticates) what the DTLS client, the remote peer, sends,
// with replay protection.
func (k SRTPKeying) PeerContext() (*srtp.Context, error) {
	c, err := srtp.CreateContext(k.ClientKey, k.ClientSalt, k.Profile,
		srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow))
	if err != nil {
		return nil, fmt.Errorf("rtc: srtp context: %w", err)
	}
	return c, nil
}

// NodeContext protects what the node, the DTLS server, sends.
func (k SRTPKeying) NodeContext() (*srtp.Context, error) {
	c, err := srtp.CreateContext(k.ServerKey, k.ServerSalt, k.Profile)
	if err != nil {
		return nil, fmt.Errorf("rtc: srtp context: %w", err)
	}
	return c, nil
}
