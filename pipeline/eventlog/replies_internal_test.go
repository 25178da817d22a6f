package eventlog

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// An inbox given back keeps nothing of its last publish but its encoding buffer.
func TestGivenInboxForgetsItsPublish(t *testing.T) {
	in := &replyInbox{buf: make([]byte, 0, 512), msg: nats.Msg{
		Subject: "ev.r1.peer", Data: []byte("{}"),
		Header: nats.Header{
			jetstream.MsgIDHeader:                   {"id-1"},
			jetstream.ExpectedStreamHeader:          {StreamEvents},
			jetstream.ExpectedLastSubjSeqHeader:     {"41"},
			jetstream.ExpectedLastSubjSeqSubjHeader: {"ev.r1.>"},
		},
	}}
	r := &replies{}
	r.give(in)
	require.Equal(t, []*replyInbox{in}, r.idle)
	require.Empty(t, in.msg.Subject)
	require.Nil(t, in.msg.Data)
	for _, k := range []string{jetstream.MsgIDHeader, jetstream.ExpectedLastSubjSeqHeader, jetstream.ExpectedLastSubjSeqSubjHeader} {
		require.Equal(t, []string{""}, in.msg.Header[k], k)
	}
	require.Equal(t, StreamEvents, in.msg.Header.Get(jetstream.ExpectedStreamHeader))
	require.Equal(t, 512, cap(in.buf))
}
