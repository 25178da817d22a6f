package sipcall

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
	"github.com/stretchr/testify/require"
)

// rawSIP sends one datagram and returns the first response line and headers (or "" when none
// comes within a second).
func rawSIP(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, 8192)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	for {
		n, err := c.Read(buf)
		if err != nil {
			return ""
		}
		if s := string(buf[:n]); !strings.HasPrefix(s, "SIP/2.0 100") {
			return s
		}
	}
}

func invite(c net.Conn, room, addr, callID string, cseq int, extra, body string) string {
	me := c.LocalAddr().String()
	return fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s-%d\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=t1\r\nTo: <sip:%s@%s>\r\n"+
		"Call-ID: %s\r\nCSeq: %d INVITE\r\nContact: <sip:alice@%s>\r\n%s"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		room, addr, me, callID, cseq, room, addr, callID, cseq, me, extra, len(body), body)
}

// TestSIPMalformed: garbage datagrams, broken requests, a bad room, bad credentials and an
// unusable offer each get an error answer or are dropped, never a crash, and nothing is
// recorded; the gateway still answers OPTIONS afterwards.
func TestSIPMalformed(t *testing.T) {
	loadOpus(t)
	node := startSIPNode(t)
	addr := node.SIPAddr()
	c, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer func() { _ = c.Close() }()

	for _, junk := range []string{"\x00\x01\x02", strings.Repeat("A", 4000), "INVITE\r\n\r\n",
		"INVITE sip:x@y SIP/2.0\r\nVia: nonsense\r\nCSeq: banana\r\n\r\n",
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\nCSeq: 1 INVITE\r\nCall-ID: none\r\n\r\n"} {
		_ = rawSIP(t, c, junk) // dropped or 400: anything but a crash
	}
	room := newRoom("sipjunk")
	require.Contains(t, rawSIP(t, c, invite(c, "bad.room", addr, "c1", 1, "", "x")), "SIP/2.0 404")

	chal := rawSIP(t, c, invite(c, room, addr, "c2", 1, "", "v=0"))
	require.Contains(t, chal, "SIP/2.0 401")
	var www string
	for _, line := range strings.Split(chal, "\r\n") {
		if v, ok := strings.CutPrefix(line, "WWW-Authenticate: "); ok {
			www = v
		}
	}
	require.NotEmpty(t, www)
	ch, err := digest.ParseChallenge(www)
	require.NoError(t, err)
	answer := func(pass string) string {
		cr, err := digest.Digest(ch, digest.Options{Method: "INVITE", URI: "sip:" + room + "@" + addr, Username: sipUser, Password: pass, Count: 1, Cnonce: "c"})
		require.NoError(t, err)
		return "Authorization: " + cr.String() + "\r\n"
	}
	require.Contains(t, rawSIP(t, c, invite(c, room, addr, "c2", 2, answer("nope"), "v=0")), "SIP/2.0 403")
	require.Contains(t, rawSIP(t, c, invite(c, room, addr, "c2", 3, `Authorization: Digest username="alice`+"\r\n", "v=0")), "SIP/2.0 ")
	require.Contains(t, rawSIP(t, c, invite(c, room, addr, "c2", 4, answer(sipPass), "v=0\r\nm=audio 1 RTP/SAVP 0\r\n")), "SIP/2.0 488")
	require.Contains(t, rawSIP(t, c, invite(c, room, addr, "c2", 5, answer(sipPass), strings.Repeat("a=x\r\n", 5000))), "SIP/2.0 488")

	opt := "OPTIONS sip:" + addr + " SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() + ";branch=z9hG4bK-opt\r\n" +
		"From: <sip:a@127.0.0.1>;tag=o\r\nTo: <sip:" + addr + ">\r\nCall-ID: opt\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	require.Contains(t, rawSIP(t, c, opt), "SIP/2.0 200")
	require.Empty(t, roomEvents(t, node, room), "nothing recorded for refused calls")
}
