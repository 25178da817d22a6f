// jetmedia demo room: a multi-party video call on the browser SDK (sdk/jetmedia.js).
//
// Join with a name: on a server in dev mode the page mints a token at GET /dev/token with the
// publish, subscribe and data grants; elsewhere paste one (jetmedia token --room R --identity I
// --name N --grants publish,subscribe,data). Query parameters: room, name, token, identity,
// auto=join (join at once), video=WxH (camera size), url (the signalling server, default this
// page's), trace=1 (keep the signalling messages for window.jetmedia.wire), simulcast=1 (send
// the camera in three layers), codec=H264 (send video in that codec).

import { Room } from "./sdk/jetmedia.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const identity = params.get("identity") || `web-${Math.random().toString(36).slice(2, 10)}`;

/** @type {Room|null} */
let room = null;
/** @type {MediaStream|null} */
let media = null;
const local = { video: null, audio: null }; // LocalTracks
const wire = [];
let state = "not joined";
let joinCalledAt = null; // Date.now() when join() was last called, for the tests

$("room").value = params.get("room") || "demo";
$("name").value = params.get("name") || "";
$("token").value = params.get("token") || "";

function setStatus(text, isError = false) {
  state = text;
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function devMode() {
  const res = await fetch(new URL("dev/token?room=demo&grants=subscribe", document.baseURI), { method: "HEAD" });
  $("dev-mode").hidden = !res.ok;
  return res.ok;
}

async function token(roomId, name) {
  const pasted = $("token").value.trim();
  if (pasted) return pasted;
  const q = new URLSearchParams({ room: roomId, identity, name, grants: "publish,subscribe,data" });
  const res = await fetch(new URL(`dev/token?${q}`, document.baseURI));
  if (res.status === 404) {
    throw new Error(`this server is not in dev mode: paste a token (jetmedia token --room ${roomId} --identity you --name "${name}" --grants publish,subscribe,data)`);
  }
  if (!res.ok) throw new Error(`dev token: HTTP ${res.status}: ${(await res.text()).trim()}`);
  return (await res.json()).token;
}

function label(peer) {
  return peer.name || peer.identity || peer.peer;
}

// ---- the grid: one tile per remote peer ----

function tile(peer) {
  let li = document.querySelector(`li[data-peer="${CSS.escape(peer.peer)}"]`);
  if (li) return li;
  li = document.createElement("li");
  li.dataset.peer = peer.peer;
  const fig = document.createElement("figure");
  const cap = document.createElement("figcaption");
  const name = document.createElement("span");
  name.className = "name";
  const st = document.createElement("span");
  st.className = "state";
  cap.append(name, " ", st);
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  fig.append(cap, video);
  li.append(fig);
  $("grid").append(li);
  updateTile(peer);
  return li;
}

function updateTile(peer) {
  const li = document.querySelector(`li[data-peer="${CSS.escape(peer.peer)}"]`);
  if (!li) return;
  li.querySelector(".name").textContent = label(peer);
  li.querySelector("video").setAttribute("aria-label", `${label(peer)}'s video`);
  const muted = [];
  for (const t of room?.tracks.values() ?? []) {
    if (t.peer === peer.peer && t.muted) muted.push(t.kind === "video" ? "camera off" : "mic muted");
  }
  li.querySelector(".state").textContent = muted.length ? `(${muted.join(", ")})` : "";
}

function removeTile(peerId) {
  const li = document.querySelector(`li[data-peer="${CSS.escape(peerId)}"]`);
  if (!li) return;
  li.querySelector("video").srcObject = null;
  li.remove();
}

function play(video, stream) {
  if (video.srcObject !== stream) video.srcObject = stream;
  video.play().catch(() => {
    // Autoplay with sound needs a user gesture; play muted instead.
    video.muted = true;
    video.play().catch(() => {});
  });
}

// ---- chat ----

function chatLine(from, text, system = false) {
  const li = document.createElement("li");
  if (system) {
    li.className = "system";
    li.textContent = text;
  } else {
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = `${from}: `;
    li.append(who, text);
  }
  $("messages").append(li);
  li.scrollIntoView({ block: "nearest" });
}

// ---- joining and leaving ----

function wireRoom(r) {
  r.addEventListener("peerjoined", (e) => {
    tile(e.detail.peer);
    chatLine("", `${label(e.detail.peer)} joined`, true);
  });
  r.addEventListener("peerleft", (e) => {
    removeTile(e.detail.peer.peer);
    chatLine("", `${label(e.detail.peer)} left`, true);
  });
  r.addEventListener("peerupdated", (e) => updateTile(e.detail.peer));
  // Who speaks now: their tiles are outlined.
  r.addEventListener("speakers", (e) => {
    const speaking = new Set(e.detail.speakers.map((s) => s.peer));
    for (const li of document.querySelectorAll("#grid li[data-peer]")) {
      li.classList.toggle("speaking", speaking.has(li.dataset.peer));
    }
  });
  r.addEventListener("trackupdated", (e) => {
    const p = r.peers.get(e.detail.track.peer);
    if (p) updateTile(p);
  });
  r.addEventListener("track", (e) => {
    const li = tile(e.detail.peer);
    const video = li.querySelector("video");
    play(video, e.detail.stream);
    // A simulcast track: the node sends the smallest layer that fills the tile.
    if ((r.tracks.get(e.detail.trackId)?.layers ?? []).length > 1) {
      video.stopWatch?.();
      video.stopWatch = r.watchSize(e.detail.trackId, video);
    }
  });
  r.addEventListener("data", (e) => {
    const p = r.peers.get(e.detail.from);
    chatLine(p ? label(p) : e.detail.from, e.detail.payload);
  });
  r.addEventListener("error", (e) => {
    console.warn("jetmedia:", e.detail.code, e.detail.message);
    setStatus(`error: ${e.detail.code}: ${e.detail.message}`, true);
  });
  r.addEventListener("reconnecting", () => setStatus("reconnecting…"));
  r.addEventListener("reconnected", () => setStatus(`in room ${r.room} as ${label(r.self)}`));
  r.addEventListener("left", (e) => {
    if (e.detail.reason !== "left") {
      const why = e.detail.error ? `${e.detail.error.code}: ${e.detail.error.message}` : "";
      setStatus(`left the room (${e.detail.reason})${why ? ": " + why : ""}`, true);
    }
    reset();
  });
}

function cameraConstraints() {
  const m = /^(\d+)x(\d+)$/.exec(params.get("video") || "");
  if (m) return { width: { ideal: Number(m[1]) }, height: { ideal: Number(m[2]) } };
  // Simulcast needs a picture large enough for three layers (Chromium drops layers below
  // about 960x540).
  return params.get("simulcast") === "1" ? { width: { ideal: 1280 }, height: { ideal: 720 } } : { width: { ideal: 640 }, height: { ideal: 480 } };
}

async function join(ev) {
  ev?.preventDefault();
  if (room) return;
  const roomId = $("room").value.trim();
  const name = $("name").value.trim();
  if (!$("join-form").reportValidity()) return;
  $("join").disabled = true;
  try {
    setStatus("opening camera and microphone…");
    try {
      media = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(), audio: true });
      $("local").srcObject = media;
    } catch (err) {
      chatLine("", `no camera or microphone (${err.message}): joining to watch only`, true);
    }
    setStatus("joining…");
    const r = new Room({
      token: await token(roomId, name), room: roomId, url: params.get("url") || undefined,
      trace: params.get("trace") === "1" ? (dir, msg) => wire.push([dir, msg]) : undefined,
    });
    room = r;
    wireRoom(r);
    joinCalledAt = Date.now();
    await r.join();
    $("self-name").textContent = label(r.self);
    for (const p of r.peers.values()) tile(p);
    $("join-form").hidden = true;
    $("call").hidden = false;
    setStatus(`in room ${r.room} as ${label(r.self)}`);
    if (media) {
      const [video] = media.getVideoTracks();
      const [audio] = media.getAudioTracks();
      const pubs = [];
      const simulcast = params.get("simulcast") === "1";
      const codec = params.get("codec") ? `video/${params.get("codec")}` : undefined;
      if (video) pubs.push(r.publish(video, { source: "camera", simulcast, codec }).then((t) => { local.video = t; $("mute-camera").disabled = false; }));
      if (audio) pubs.push(r.publish(audio, { source: "mic" }).then((t) => { local.audio = t; $("mute-mic").disabled = false; }));
      await Promise.all(pubs);
      if (room === r) setStatus(`in room ${r.room} as ${label(r.self)}, publishing`);
    }
  } catch (err) {
    console.error("join:", err);
    setStatus(`cannot join: ${err.code ? err.code + ": " : ""}${err.message}`, true);
    await room?.leave();
    reset();
  } finally {
    $("join").disabled = false;
  }
}

async function leave() {
  const r = room;
  if (!r) return;
  setStatus("leaving…");
  await r.leave();
  setStatus("left the room");
  reset();
}

function reset() {
  room = null;
  local.video = local.audio = null;
  media?.getTracks().forEach((t) => t.stop());
  media = null;
  $("local").srcObject = null;
  for (const li of document.querySelectorAll("li[data-peer]")) removeTile(li.dataset.peer);
  for (const id of ["mute-camera", "mute-mic"]) {
    $(id).disabled = true;
    $(id).setAttribute("aria-pressed", "false");
  }
  $("mute-camera").textContent = "Turn camera off";
  $("mute-mic").textContent = "Mute microphone";
  $("self-state").textContent = "";
  $("call").hidden = true;
  $("join-form").hidden = false;
}

function toggle(kind) {
  const t = local[kind];
  if (!t) return;
  t.setMuted(!t.muted);
  const btn = $(kind === "video" ? "mute-camera" : "mute-mic");
  btn.setAttribute("aria-pressed", String(t.muted));
  btn.textContent = kind === "video" ? (t.muted ? "Turn camera on" : "Turn camera off") : (t.muted ? "Unmute microphone" : "Mute microphone");
  const off = [];
  if (local.video?.muted) off.push("camera off");
  if (local.audio?.muted) off.push("mic muted");
  $("self-state").textContent = off.length ? `(${off.join(", ")})` : "";
}

function sendChat(ev) {
  ev.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text || !room) return;
  try {
    room.send(text);
    chatLine(`${label(room.self)} (you)`, text);
    $("chat-input").value = "";
  } catch (err) {
    chatLine("", `not sent: ${err.message}`, true);
  }
}

$("join-form").addEventListener("submit", join);
$("leave").addEventListener("click", leave);
$("mute-camera").addEventListener("click", () => toggle("video"));
$("mute-mic").addEventListener("click", () => toggle("audio"));
$("chat").addEventListener("submit", sendChat);
window.addEventListener("pagehide", () => { room?.leave(); });

// window.jetmedia is the page's test hook.
window.jetmedia = {
  get room() { return room; },
  get state() { return state; },
  wire,
  identity,
  get joinCalledAt() { return joinCalledAt; },
  // stats: per remote peer, the video frames decoded, audio energy and bytes received of its tracks, from
  // each receiver's getStats(); plus what this page sends.
  async stats() {
    const out = { state, peers: {}, framesSent: 0, layersSent: 0 };
    if (!room?.peerConnection) return out;
    for (const t of room.tracks.values()) {
      const rt = room.remoteTrack(t.track);
      if (!rt) continue;
      const p = (out.peers[t.peer] ??= { framesDecoded: 0, bytesReceived: 0, videoTracks: 0, audioTracks: 0, audioEnergy: 0 });
      p[t.kind === "video" ? "videoTracks" : "audioTracks"]++;
      (await rt.receiver.getStats()).forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        p.bytesReceived += s.bytesReceived ?? 0;
        if (s.kind === "video") {
          p.framesDecoded += s.framesDecoded ?? 0;
          p.frameWidth = s.frameWidth ?? 0;
          p.packetsLost = (p.packetsLost ?? 0) + (s.packetsLost ?? 0);
        } else if (s.kind === "audio") {
          // Chromium computes it on played-out audio only: the peer's tile plays it.
          p.audioEnergy += s.totalAudioEnergy ?? 0;
        }
      });
    }
    (await room.peerConnection.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video") {
        out.framesSent += s.framesSent ?? 0;
        if ((s.framesSent ?? 0) > 0) out.layersSent++;
      }
    });
    return out;
  },
};

devMode().catch((err) => console.warn("dev mode probe:", err)).finally(() => {
  if (params.get("auto") === "join" && $("name").value.trim()) join();
});
