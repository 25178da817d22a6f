package tests

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/jetmedia/jetmedia/pipeline/auth"
)

// TestAnnounce: with --announce the answer's host candidates carry the announced address
// instead of the bound one. The client never applies the answer, so no traffic goes to the
// documentation address used here.
func TestAnnounce(t *testing.T) {
	cfg := nodeConfig(t, "announce")
	cfg.Announce = []string{"203.0.113.7"}
	node := startNode(t, cfg)

	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	defer pc.Close()
	_, err = pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	require.NoError(t, err)
	offer, err := pc.CreateOffer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(pc)
	require.NoError(t, pc.SetLocalDescription(offer))
	select {
	case <-gathered:
	case <-time.After(10 * time.Second):
		t.Fatal("ICE gathering did not complete")
	}
	req, err := http.NewRequest(http.MethodPost, node.HTTPURL()+"/whip/announced", strings.NewReader(pc.LocalDescription().SDP))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token(t, "announced", "announcer", auth.Publish))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", answer)
	require.Contains(t, string(answer), " 203.0.113.7 ")
	require.NotContains(t, string(answer), " 127.0.0.1 ")
}
