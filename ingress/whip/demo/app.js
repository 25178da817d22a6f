// jetmedia demo page: a WHIP publisher (RFC 9725) and a WHEP player
// (draft-ietf-wish-whep) in plain browser JavaScript.
//
// Signalling is non-trickle: the server answers with a complete SDP and has no
// PATCH endpoint, so the offer is sent only once ICE gathering has finished.
//
// Every request carries a bearer token (RFC 9725 §4.4): the one pasted in the
// page (or given as ?token=), else, on a server in dev mode, one minted by
// GET /dev/token for this room with just the grant the action needs.

const ICE_GATHER_CAP_MS = 2000; // send what we have if gathering stalls (e.g. an unreachable STUN).
const WHEP_RETRY_MS = 500; // poll interval while the room has no publisher (409).

class HTTPError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}${body ? `: ${body.trim()}` : ""}`);
    this.status = status;
  }
}

function waitIceGathering(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, ICE_GATHER_CAP_MS);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// negotiate POSTs pc's offer to endpoint, applies the answer and returns the
// session URL. It throws HTTPError for non-201 answers so callers can retry.
async function negotiate(pc, endpoint, token, signal, timing = {}) {
  await pc.setLocalDescription(await pc.createOffer());
  await waitIceGathering(pc);
  timing.post = performance.now();
  const res = await fetch(endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", ...authHeader(token) },
    body: pc.localDescription.sdp,
    signal,
  });
  const body = await res.text();
  if (res.status !== 201) throw new HTTPError(res.status, body);
  const location = res.headers.get("Location");
  if (!location) throw new Error("server answered without a Location header");
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  return { url: new URL(location, endpoint).href, links: parseLinks(res.headers.get("Link"), endpoint) };
}

// parseLinks reads a Link header into { rel: absolute URL }.
function parseLinks(header, base) {
  const out = {};
  for (const part of (header || "").split(/,(?=\s*<)/)) {
    const m = part.match(/<([^>]*)>\s*;\s*rel="?([^";]+)"?/);
    if (m) out[m[2]] = new URL(m[1], base).href;
  }
  return out;
}

// The WHEP draft's layer extension: POST {"encodingId": rid} to this link.
const LAYER_REL = "urn:ietf:params:whep:ext:core:layer";

// SIMULCAST are the layers a simulcast publisher sends, lowest first: quarter, half and
// full capture size, each capped (bit/s).
export const SIMULCAST = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

// preferCodec puts mime (e.g. "video/H264") first among a transceiver's codecs, where the
// browser lets pages choose.
function preferCodec(transceiver, mime) {
  if (!mime || !transceiver.setCodecPreferences || !RTCRtpSender.getCapabilities) return;
  const codecs = RTCRtpSender.getCapabilities("video")?.codecs ?? [];
  const want = codecs.filter((c) => c.mimeType.toLowerCase() === mime.toLowerCase());
  if (want.length === 0) throw new Error(`this browser cannot send ${mime}`);
  transceiver.setCodecPreferences([...want, ...codecs.filter((c) => !want.includes(c))]);
}

function authHeader(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// whipPublish sends every track of stream to endpoint; with simulcast the video in the three
// SIMULCAST layers, with codec (a MIME type) in that codec.
export async function whipPublish(endpoint, stream, token, signal, { simulcast = false, codec = "" } = {}) {
  const pc = new RTCPeerConnection();
  try {
    for (const track of stream.getTracks()) {
      const init = { direction: "sendonly", streams: [stream] };
      if (simulcast && track.kind === "video") init.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
      const t = pc.addTransceiver(track, init);
      if (track.kind === "video") preferCodec(t, codec);
    }
    return { pc, token, ...(await negotiate(pc, endpoint, token, signal)) };
  } catch (err) {
    pc.close();
    throw err;
  }
}

// whepPlay receives the room's video and audio, retrying while the room has
// no publisher yet. onTrack is called with the remote MediaStream.
export async function whepPlay(endpoint, token, onTrack, signal, onWaiting = () => {}, layer = "") {
  for (;;) {
    const pc = new RTCPeerConnection();
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    // When this try posted its offer, its transport connected (ICE and DTLS done) and its
    // first video frame was shown (the page's onTrack sets firstFrame): milliseconds of
    // performance.now().
    const timing = {};
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "connected" && timing.connected === undefined) timing.connected = performance.now();
    });
    pc.ontrack = (ev) => {
      stream.addTrack(ev.track);
      onTrack(stream, timing);
    };
    try {
      const session = { pc, token, timing, ...(await negotiate(pc, endpoint, token, signal, timing)) };
      if (layer) await selectLayer(session, layer);
      return session;
    } catch (err) {
      pc.close();
      if (!(err instanceof HTTPError) || err.status !== 409) throw err;
      onWaiting(err);
      await sleep(WHEP_RETRY_MS, signal);
    }
  }
}

// selectLayer asks the server for a simulcast layer of a WHEP session ("" lets it choose from
// the viewer's bandwidth); the picture changes at the layer's next key frame.
export async function selectLayer(session, layer) {
  const url = session.links?.[LAYER_REL];
  if (!url) throw new Error("the server offers no layer selection");
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeader(session.token) },
    body: JSON.stringify({ encodingId: layer }),
  });
  if (!res.ok) throw new HTTPError(res.status, await res.text());
}

// stopSession tears a WHIP or WHEP session down on both ends.
export async function stopSession(session, keepalive = false) {
  session.pc.close();
  const res = await fetch(session.url, { method: "DELETE", keepalive, headers: authHeader(session.token) });
  if (!res.ok) throw new HTTPError(res.status, await res.text());
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

// ---- page wiring ----

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const roles = {
  publish: { session: null, abort: null, start: $("publish"), stop: $("stop-publish"), video: $("local") },
  play: { session: null, abort: null, start: $("play"), stop: $("stop-play"), video: $("remote") },
};
let state = "idle";

$("room").value = params.get("room") || "demo";
$("token").value = params.get("token") || "";
// One identity per page load: the actor of this tab's events, and the owner of its sessions.
const identity = params.get("identity") || `web-${Math.random().toString(36).slice(2, 10)}`;
let devMode = null; // unknown until detectDevMode has answered

// token returns the pasted token, or in dev mode a fresh one for room with
// grant, or null: then the server's 401 says what is missing.
async function token(room, grant, signal) {
  const pasted = $("token").value.trim();
  if (pasted) return pasted;
  if (devMode === false) return null;
  const q = new URLSearchParams({ room, identity, grants: grant });
  if (params.get("name")) q.set("name", params.get("name"));
  const res = await fetch(new URL(`dev/token?${q}`, document.baseURI), { signal });
  if (res.status === 404) return null;
  if (!res.ok) throw new HTTPError(res.status, await res.text());
  return (await res.json()).token;
}

// Dev mode is announced on the page: anyone who reaches this server can mint
// tokens. Only a node in dev mode has /dev/token.
async function detectDevMode() {
  const res = await fetch(new URL("dev/token?room=demo&grants=subscribe", document.baseURI), { method: "HEAD" });
  devMode = res.ok;
  $("dev-mode").hidden = !devMode;
}

// explain adds what to do to a 401 or 403 from the server.
function explain(err, name) {
  if (!(err instanceof HTTPError) || (err.status !== 401 && err.status !== 403)) return err.message;
  const grant = name === "publish" ? "publish" : "subscribe";
  return `${err.message} (paste a token: jetmedia token --room ${$("room").value.trim()} --identity you --grants ${grant})`;
}

function setStatus(next, detail = "", isError = false) {
  state = next;
  const el = $("status");
  el.textContent = detail ? `${next}: ${detail}` : next;
  el.classList.toggle("error", isError);
}

function roomName() {
  const room = $("room").value.trim();
  if (!room) throw new Error("room name is empty");
  return room;
}

function endpoint(kind) {
  return new URL(`${kind}/${encodeURIComponent(roomName())}`, document.baseURI).href;
}

function setBusy(role, busy) {
  role.start.disabled = busy;
  role.stop.disabled = !busy;
}

function watchConnection(name, pc) {
  const update = () => {
    const s = pc.connectionState;
    if (s === "connected") setStatus(name === "publish" ? "publishing" : "playing");
    else if (s === "failed" || s === "disconnected") setStatus(`${name} ${s}`, "peer connection lost", true);
  };
  pc.addEventListener("connectionstatechange", update);
  update();
}

async function run(name, startFn) {
  const role = roles[name];
  role.abort = new AbortController();
  const signal = role.abort.signal;
  setBusy(role, true);
  try {
    const session = await startFn(signal);
    if (signal.aborted) { // stopped while the answer was on its way
      await stopSession(session);
      return;
    }
    role.session = session;
    setStatus(`${name} connecting`, "ICE/DTLS");
    watchConnection(name, session.pc);
  } catch (err) {
    if (signal.aborted) return; // stopped by the user
    console.error(`${name}:`, err);
    setStatus(`${name} error`, explain(err, name), true);
    await stop(name);
  }
}

async function stop(name) {
  const role = roles[name];
  role.abort?.abort(new DOMException("stopped", "AbortError"));
  role.abort = null;
  role.video.srcObject?.getTracks().forEach((t) => t.stop());
  role.video.srcObject = null;
  const session = role.session;
  role.session = null;
  setBusy(role, false);
  if (!session) return;
  try {
    await stopSession(session);
    setStatus(`${name} stopped`);
  } catch (err) {
    setStatus(`${name} stop error`, err.message, true);
  }
}

function publish() {
  return run("publish", async (signal) => {
    setStatus("publish", "opening camera");
    const simulcast = $("simulcast").checked;
    // Simulcast needs a picture large enough for three layers (Chromium drops layers below
    // about 960x540).
    const size = /^(\d+)x(\d+)$/.exec(params.get("video") || "");
    const video = size ? { width: { ideal: Number(size[1]) }, height: { ideal: Number(size[2]) } }
      : simulcast ? { width: { ideal: 1280 }, height: { ideal: 720 } } : true;
    const media = await navigator.mediaDevices.getUserMedia({ video, audio: true });
    if (signal.aborted) media.getTracks().forEach((t) => t.stop());
    signal.throwIfAborted();
    roles.publish.video.srcObject = media;
    const tok = await token(roomName(), "publish", signal);
    setStatus("publish", "sending offer");
    const codec = params.get("codec") ? `video/${params.get("codec")}` : "";
    return whipPublish(endpoint("whip"), media, tok, signal, { simulcast, codec });
  });
}

function play() {
  return run("play", async (signal) => {
    const tok = await token(roomName(), "subscribe", signal);
    setStatus("play", "sending offer");
    const video = roles.play.video;
    const onTrack = (stream, timing) => {
      if (video.srcObject === stream) return;
      video.srcObject = stream;
      video.requestVideoFrameCallback?.(() => { timing.firstFrame ??= performance.now(); });
      video.play().catch(() => {
        // Autoplay with sound needs a user gesture; start muted instead.
        video.muted = true;
        video.play().catch(() => {});
      });
    };
    const onWaiting = () => setStatus("waiting", "no publisher in this room yet, retrying");
    return whepPlay(endpoint("whep"), tok, onTrack, signal, onWaiting, $("layer").value);
  });
}

roles.publish.start.addEventListener("click", publish);
roles.publish.stop.addEventListener("click", () => stop("publish"));
roles.play.start.addEventListener("click", play);
roles.play.stop.addEventListener("click", () => stop("play"));
$("simulcast").checked = params.get("simulcast") === "1";
$("layer").value = params.get("layer") || "";
$("layer").addEventListener("change", () => {
  const session = roles.play.session;
  if (session) selectLayer(session, $("layer").value).catch((err) => setStatus("layer error", err.message, true));
});
$("controls").addEventListener("submit", (ev) => ev.preventDefault());

// Free the server's sessions when the tab goes away.
window.addEventListener("pagehide", () => {
  for (const role of Object.values(roles)) {
    if (role.session) stopSession(role.session, true).catch(() => {});
  }
});

// window.jetmedia is the page's test hook: counters summed over both sessions.
window.jetmedia = {
  async stats() {
    const out = { framesDecoded: 0, framesSent: 0, bytesReceived: 0, state, devMode, identity,
      frameWidth: 0, frameHeight: 0, packetsLost: 0, layersSent: 0, codec: "", audioEnergy: 0,
      freezeCount: 0, totalFreezesDuration: 0, nackCount: 0, retransmittedPacketsReceived: 0, pliCount: 0,
      plisByLayer: {} };
    for (const role of Object.values(roles)) {
      if (!role.session) continue;
      const report = await role.session.pc.getStats();
      report.forEach((s) => {
        if (s.type === "inbound-rtp") {
          out.bytesReceived += s.bytesReceived ?? 0;
          if (s.kind === "video") {
            out.framesDecoded += s.framesDecoded ?? 0;
            out.frameWidth = s.frameWidth ?? 0;
            out.frameHeight = s.frameHeight ?? 0;
            out.packetsLost += s.packetsLost ?? 0;
            out.codec = report.get(s.codecId)?.mimeType ?? "";
            // Freezes as Chromium counts them (a frame later than max(3x the average frame
            // interval, +150 ms)), and what loss repair asked for and got.
            out.freezeCount += s.freezeCount ?? 0;
            out.totalFreezesDuration += s.totalFreezesDuration ?? 0;
            out.nackCount += s.nackCount ?? 0;
            out.retransmittedPacketsReceived += s.retransmittedPacketsReceived ?? 0;
            out.pliCount += s.pliCount ?? 0;
          } else if (s.kind === "audio") {
            // Chromium computes it on played-out audio only: the remote video element plays it.
            out.audioEnergy += s.totalAudioEnergy ?? 0;
          }
        } else if (s.type === "outbound-rtp" && s.kind === "video") {
          out.framesSent += s.framesSent ?? 0;
          if ((s.framesSent ?? 0) > 0) out.layersSent++;
          // The keyframe requests each sent layer (simulcast RID) received.
          out.plisByLayer[s.rid ?? ""] = (out.plisByLayer[s.rid ?? ""] ?? 0) + (s.pliCount ?? 0);
        }
      });
    }
    return out;
  },
  // firstFrame is the playing session's time to its first shown video frame, in ms, from
  // its POST and from its transport's connection (ICE and DTLS done); null until shown.
  firstFrame() {
    const t = roles.play.session?.timing;
    if (!t || t.firstFrame === undefined || t.post === undefined) return null;
    return { fromPost: t.firstFrame - t.post, fromConnected: t.connected === undefined ? null : t.firstFrame - t.connected };
  },
  // setLayer asks for a simulcast layer of the playing session ("": automatic).
  async setLayer(layer) {
    $("layer").value = layer;
    await selectLayer(roles.play.session, layer);
  },
};

const auto = params.get("auto");
detectDevMode().catch((err) => console.warn("dev mode probe:", err)).finally(() => {
  if (auto === "publish") publish();
  else if (auto === "play") play();
});
