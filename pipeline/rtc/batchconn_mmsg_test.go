//go:build linux && (amd64 || arm64)

package rtc

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// group finds every destination of a full send (planSlots packets, as many destinations as
// the table must hold, their ports and addresses crowding its slots) and links each one's
// packets in order, destinations in the order of their first packet; a second send on the
// same plan starts afresh.
func TestSendPlanGroupsByDestination(t *testing.T) {
	p := new(sendPlan)
	for round, dests := range []int{planSlots, 7, planSlots / 3} {
		addrs := make([]netip.AddrPort, dests)
		for i := range addrs {
			if i%2 == 0 { // one host, many ports (viewers behind a NAT)
				addrs[i] = netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), uint16(40000+i))
			} else { // many hosts, one port
				addrs[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 40000)
			}
		}
		want := map[netip.AddrPort][]int32{}
		var order []netip.AddrPort
		for k := range planSlots {
			d := &addrs[(k*7+round)%dests]
			p.dst[k] = d
			if want[*d] == nil {
				order = append(order, *d)
			}
			want[*d] = append(want[*d], int32(k))
		}
		p.group(planSlots)
		require.Equal(t, int32(len(order)), p.ngroups, "round %d", round)
		for g := range p.ngroups {
			var got []int32
			for k := p.head[g]; k >= 0; k = p.next[k] {
				got = append(got, k)
			}
			require.Equal(t, want[order[g]], got, "round %d, destination %v", round, order[g])
			require.Equal(t, got[len(got)-1], p.tail[g])
		}
	}
}
