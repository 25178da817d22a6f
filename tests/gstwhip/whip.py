#!/usr/bin/env python3
"""Publish a test pattern from GStreamer's webrtcbin to a WHIP endpoint.

Used by tests/gstwhip_test.go: the publisher is GStreamer itself (libnice ICE, GStreamer's
DTLS/SRTP and RTP payloaders), driven the way a WHIP client drives it: create the offer,
wait for ICE gathering to complete (no trickle), POST it with the bearer token, set the
answer. It publishes until SIGTERM/SIGINT or --duration, then DELETEs the session.

  whip.py --check                      exit 0 when every element and binding is there,
                                       3 (and what is missing on stderr) when not
  whip.py --url URL --token T --codec vp8|h264 [--duration S]

Progress goes to stdout, one line each ("offer", "answer", "ice-connection-state ..."),
so the caller can tell where a failed run stopped.
"""

import argparse
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request

ELEMENTS = {
    "webrtcbin": "gstreamer1.0-plugins-bad",
    "nicesrc": "gstreamer1.0-nice",
    "dtlssrtpenc": "gstreamer1.0-plugins-bad",
    "srtpenc": "gstreamer1.0-plugins-bad",
    "videotestsrc": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "vp8enc": "gstreamer1.0-plugins-good",
    "rtpvp8pay": "gstreamer1.0-plugins-good",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "rtph264pay": "gstreamer1.0-plugins-good",
}

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstWebRTC", "1.0")
    gi.require_version("GstSdp", "1.0")
    from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402
except (ImportError, ValueError) as e:  # no python3-gi, or no typelib
    print(f"missing python3-gi or gir1.2-gst-plugins-bad-1.0: {e}", file=sys.stderr)
    sys.exit(3)

# Encoders tuned for a live, low-latency source; a keyframe every second so that a viewer
# joining late gets a picture soon even without a PLI.
PIPELINES = {
    "vp8": (
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
        "! videoconvert ! vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=500000 "
        "! rtpvp8pay pt=96 picture-id-mode=15-bit "
        "! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! webrtc."
    ),
    "h264": (
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
        "! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=500 "
        "! video/x-h264,profile=constrained-baseline "
        "! rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency "
        "! application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000 ! webrtc."
    ),
}


def check():
    Gst.init(None)
    missing = [f"{e} ({pkg})" for e, pkg in ELEMENTS.items() if Gst.ElementFactory.find(e) is None]
    if missing:
        print("missing GStreamer elements: " + ", ".join(missing), file=sys.stderr)
        return 3
    print("ok " + Gst.version_string())
    return 0


class Publisher:
    def __init__(self, url, token, codec, duration):
        self.url, self.token, self.duration = url, token, duration
        self.location = None
        self.code = 0
        self.loop = GLib.MainLoop()
        self.pipe = Gst.parse_launch(f"webrtcbin name=webrtc bundle-policy=max-bundle {PIPELINES[codec]}")
        self.webrtc = self.pipe.get_by_name("webrtc")
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::ice-connection-state", self.on_state, "ice-connection-state")
        self.webrtc.connect("notify::connection-state", self.on_state, "connection-state")
        self.sent = False
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    def say(self, *words):
        print(*words, flush=True)

    def fail(self, why):
        print(f"error: {why}", file=sys.stderr, flush=True)
        self.code = 1
        self.loop.quit()

    def on_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        self.fail(f"pipeline: {err.message} ({dbg})")

    def on_state(self, element, _pspec, name):
        state = element.get_property(name)
        self.say(name, state.value_nick)
        if name == "connection-state" and state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            self.fail("the peer connection failed")

    def on_negotiation_needed(self, element):
        # Publish only: the transceiver webrtcbin made for the linked pad would be sendrecv.
        for i in range(8):
            t = element.emit("get-transceiver", i)
            if t is None:
                break
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        promise = Gst.Promise.new_with_change_func(self.on_offer, element, None)
        element.emit("create-offer", None, promise)

    def on_offer(self, promise, element, _):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            GLib.idle_add(self.fail, f"create-offer: {reply}")
            return
        element.emit("set-local-description", offer, Gst.Promise.new())
        # Without trickle the offer goes once gathering is complete; libnice's gathering
        # state is not always reported complete, so a timeout posts what there is.
        GLib.timeout_add_seconds(3, self.post_offer)

    def on_gathering(self, element, _pspec):
        if element.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.post_offer)

    def post_offer(self):
        if self.sent:
            return False
        self.sent = True
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        self.say("offer", sdp.count("a=candidate"), "candidates")
        req = urllib.request.Request(self.url, data=sdp.encode(), method="POST")
        req.add_header("Content-Type", "application/sdp")
        req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                answer = resp.read().decode()
                self.location = urllib.parse.urljoin(self.url, resp.headers.get("Location", ""))
        except urllib.error.HTTPError as e:
            self.fail(f"WHIP POST: HTTP {e.code}: {e.read().decode(errors='replace').strip()}")
            return False
        except OSError as e:
            self.fail(f"WHIP POST: {e}")
            return False
        self.say("answer", answer.count("a=candidate"), "candidates", "location", self.location)
        res, msg = GstSdp.SDPMessage.new_from_text(answer)
        if res != GstSdp.SDPResult.OK:
            self.fail(f"answer does not parse: {res}")
            return False
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.webrtc.emit("set-remote-description", desc, Gst.Promise.new())
        return False

    def stop(self):
        self.say("stopping")
        self.loop.quit()
        return False

    def delete(self):
        if not self.location:
            return
        req = urllib.request.Request(self.location, method="DELETE")
        req.add_header("Authorization", "Bearer " + self.token)
        try:
            urllib.request.urlopen(req, timeout=5).close()
            self.say("deleted")
        except OSError as e:  # the node may be gone already
            print(f"DELETE: {e}", file=sys.stderr, flush=True)

    def run(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, self.stop)
        if self.duration > 0:
            GLib.timeout_add(int(self.duration * 1000), self.stop)
        if self.pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            return self.fail("the pipeline does not start") or 1
        self.loop.run()
        self.delete()
        self.pipe.set_state(Gst.State.NULL)
        return self.code


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="check the elements and bindings, then exit")
    ap.add_argument("--url", help="WHIP endpoint, e.g. http://127.0.0.1:8080/whip/room")
    ap.add_argument("--token", default="", help="bearer token")
    ap.add_argument("--codec", choices=sorted(PIPELINES), default="vp8")
    ap.add_argument("--duration", type=float, default=0, help="seconds to publish (0: until SIGTERM)")
    args = ap.parse_args()
    if args.check:
        return check()
    if not args.url:
        ap.error("--url is required")
    Gst.init(None)
    return Publisher(args.url, args.token, args.codec, args.duration).run()


if __name__ == "__main__":
    sys.exit(main())
