package rtcclient

import (
	"fmt"
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// APIOption configures NewAPI.
type APIOption func(*apiConfig)

type apiConfig struct {
	anyInterface, lightReceiver, twcc bool
	interceptors                      []interceptor.Factory
}

// AnyInterface gathers candidates on every interface, for a server on another machine. By
// default the API gathers loopback candidates only, so tests and a load run against a
// server on this machine never send traffic off it.
func AnyInterface() APIOption { return func(c *apiConfig) { c.anyInterface = true } }

// LightReceiver gives the API's connections what a viewer must do for the server (NACK
// generation and receiver reports) and not pion's statistics and congestion-feedback
// bookkeeping, nor SRTP replay protection (per-packet work a measuring client does not need:
// it counts duplicates itself). A hundred viewers share a load run's machine with the
// server, and what they spend per packet delays the packets they measure. By default the
// connections get pion's default interceptors (NACK, RTCP reports, TWCC, stats).
func LightReceiver() APIOption { return func(c *apiConfig) { c.lightReceiver = true } }

// TWCCFeedback gives a LightReceiver's connections transport-wide congestion control
// feedback, as browsers send it: they negotiate the transport-cc header extension and
// feedback and report every packet's arrival (pion's twcc sender, a message every 100 ms),
// so the server's bandwidth estimator works for them as for a browser. Connections without
// LightReceiver have it already.
func TWCCFeedback() APIOption { return func(c *apiConfig) { c.twcc = true } }

// WithInterceptors adds interceptors, run after the others.
func WithInterceptors(fs ...interceptor.Factory) APIOption {
	return func(c *apiConfig) { c.interceptors = append(c.interceptors, fs...) }
}

// NewAPI returns a pion API for WHIP and WHEP clients: the default codecs, IPv4 host
// candidates without mDNS, loopback only unless AnyInterface.
func NewAPI(opts ...APIOption) (*webrtc.API, error) {
	var c apiConfig
	for _, o := range opts {
		o(&c)
	}
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("rtcclient: codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	if c.lightReceiver {
		if err := webrtc.ConfigureNack(me, ir); err != nil {
			return nil, fmt.Errorf("rtcclient: nack: %w", err)
		}
		if err := webrtc.ConfigureRTCPReports(ir); err != nil {
			return nil, fmt.Errorf("rtcclient: rtcp reports: %w", err)
		}
		if c.twcc {
			if err := webrtc.ConfigureTWCCSender(me, ir); err != nil {
				return nil, fmt.Errorf("rtcclient: transport-wide feedback: %w", err)
			}
		}
	} else if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, fmt.Errorf("rtcclient: interceptors: %w", err)
	}
	for _, f := range c.interceptors {
		ir.Add(f)
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if !c.anyInterface {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if c.lightReceiver {
		se.DisableSRTPReplayProtection(true)
		se.DisableSRTCPReplayProtection(true)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}
