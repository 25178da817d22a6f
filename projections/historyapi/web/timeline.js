// jetmedia room timeline: who was in a room when, and what they published, drawn
// from the room's event log (GET /v1/rooms/{room}/events, paged JSON lines);
// clicking the chart asks for the state at that instant
// (GET /v1/rooms/{room}/state?at=). Plain JavaScript and SVG, no build step.
//
// Both endpoints need a token with the admin grant for the room: the one
// pasted in the page, else, on a server in dev mode, one minted by
// GET /dev/token?grants=admin. The page never writes anything.
//
// Elements carry data-* attributes (peer ids, exact RFC 3339 times) so that
// people can inspect them and tests can read the drawing.

const NS = "http://www.w3.org/2000/svg";
const params = new URLSearchParams(location.search);
// Events per request; ?limit= (1-10000) makes paging visible on small rooms.
const PAGE_LIMIT = Math.min(10000, Math.max(1, Number(params.get("limit")) || 5000));

const LABEL_W = 230; // label column
const PAD_R = 24;
const AXIS_H = 34; // clickable time axis on top
const PEER_H = 26; // a peer's row
const TRACK_H = 16; // a track's row under its peer
const ROOM_ID = /^[A-Za-z0-9_-]{1,64}$/;

const $ = (id) => document.getElementById(id);

class HTTPError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}${body ? `: ${body.trim()}` : ""}`);
    this.status = status;
  }
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// --- tokens ---------------------------------------------------------------

const minted = new Map(); // room → dev-mode token

async function adminToken(room) {
  const pasted = $("token").value.trim();
  if (pasted) return pasted;
  if (minted.has(room)) return minted.get(room);
  const q = new URLSearchParams({ room, grants: "admin", ttl: "1h", format: "text" });
  const res = await fetch(`/dev/token?${q}`);
  if (res.status === 404) {
    throw new Error("this server is not in dev mode: paste a token with the admin grant for this room (jetmedia token --grants admin)");
  }
  if (!res.ok) throw new HTTPError(res.status, await res.text());
  const tok = (await res.text()).trim();
  minted.set(room, tok);
  return tok;
}

async function apiGet(room, path, signal) {
  const tok = await adminToken(room);
  const res = await fetch(path, { headers: { Authorization: `Bearer ${tok}` }, signal, cache: "no-store" });
  if (!res.ok) throw new HTTPError(res.status, await res.text());
  return res;
}

// --- loading --------------------------------------------------------------

// loadEvents reads every page of the room's events and hands each to onEvent,
// reporting progress after each page; it keeps no event, so a long room costs
// memory for its sessions only. A page cut short ends with {"next":"<seq>"}.
async function loadEvents(room, signal, onEvent, progress) {
  let n = 0;
  let from = "";
  const started = performance.now();
  for (let page = 1; ; page++) {
    const q = new URLSearchParams({ limit: String(PAGE_LIMIT) });
    if (from) q.set("from", from);
    const res = await apiGet(room, `/v1/rooms/${encodeURIComponent(room)}/events?${q}`, signal);
    const text = await res.text();
    let next = "";
    for (const line of text.split("\n")) {
      if (!line) continue;
      const obj = JSON.parse(line);
      if (obj.type === undefined && obj.next !== undefined) {
        next = obj.next;
      } else {
        onEvent(obj);
        n++;
      }
    }
    progress(n, page, performance.now() - started);
    if (!next) return n;
    from = next;
  }
}

const baseType = (t) => t.replace(/\.v\d+$/, ""); // "peer.left.v2" → "peer.left": every version

// newModel folds events, one add(e) at a time, into sessions: one entry per
// peer with its join and leave, and the tracks it published with their start
// and end. A peer that leaves ends its tracks too (as the server's fold does),
// whether or not their unpublish was recorded.
function newModel() {
  const model = { peers: [], start: null, end: null, events: 0, add };
  const peers = model.peers;
  const byPeer = new Map(); // peer id → its latest session
  const openTracks = new Map(); // track id → track
  const at = (e) => ({ iso: e.time, ms: Date.parse(e.time) });
  const peerOf = (id, e) => {
    let p = byPeer.get(id);
    if (!p) {
      // Joined before the first event we have (retention trimmed the log).
      p = { id, identity: "", name: "", transport: "", role: "", join: at(e), early: true, leave: null, tracks: [] };
      byPeer.set(id, p);
      peers.push(p);
    }
    return p;
  };
  const endTrack = (tr, when) => {
    if (!tr.unpublished) tr.unpublished = when;
    openTracks.delete(tr.id);
  };
  function add(e) {
    const when = at(e);
    if (Number.isNaN(when.ms)) return;
    if (model.start === null) model.start = when;
    model.end = when;
    model.events++;
    const d = e.data || {};
    switch (baseType(e.type)) {
      case "peer.joined": {
        const p = { id: d.peer, identity: d.identity || "", name: d.name || "", transport: d.transport || "",
          role: d.role || "", join: when, leave: null, tracks: [] };
        byPeer.set(d.peer, p);
        peers.push(p);
        break;
      }
      case "peer.left": {
        const p = peerOf(d.peer, e);
        p.leave = when;
        p.reason = d.reason || "";
        p.by = (d.cause && d.cause.by) || ""; // v2; a v1 event has no cause
        for (const tr of p.tracks) endTrack(tr, when);
        break;
      }
      case "track.published": {
        const p = peerOf(d.peer, e);
        const tr = { id: d.track, kind: d.kind || "", source: d.source || "", codec: d.codec || "", published: when, unpublished: null };
        p.tracks.push(tr);
        openTracks.set(d.track, tr);
        break;
      }
      case "track.unpublished": {
        const tr = openTracks.get(d.track);
        if (tr) endTrack(tr, when);
        break;
      }
    }
  }
  return model;
}

// --- drawing --------------------------------------------------------------

function el(name, attrs = {}, text) {
  const n = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text; // never innerHTML: names come from tokens
  return n;
}

const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800]
  .map((s) => s * 1000);

function ticks(t0, t1, most) {
  const step = STEPS.find((s) => (t1 - t0) / s <= most) || STEPS[STEPS.length - 1];
  const out = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
  return { step, out };
}

function tickLabel(ms, step, span) {
  const iso = new Date(ms).toISOString(); // UTC, like the log
  if (span >= 86400000) return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
  return step < 60000 ? iso.slice(11, 19) : iso.slice(11, 16);
}

const peerLabel = (p) => p.name || p.identity || p.id;
const fmt = (w) => (w ? w.iso : "");

function peerTitle(p) {
  const lines = [`${peerLabel(p)}  (peer ${p.id}${p.identity ? `, identity ${p.identity}` : ""})`];
  if (p.transport || p.role) lines.push(`${p.transport} ${p.role}`.trim());
  lines.push(`joined ${p.join.iso}${p.early ? " or before (the log starts here)" : ""}`);
  lines.push(p.leave ? `left ${p.leave.iso}${p.reason ? ` (${p.reason}${p.by ? `, by ${p.by}` : ""})` : ""}` : "still present");
  return lines.join("\n");
}

function trackLabel(tr) {
  return [tr.kind, tr.source].filter(Boolean).join(" · ") || tr.id;
}

let current = null; // { room, model, now, scale }

function render() {
  const chart = $("chart");
  chart.replaceChildren();
  if (!current) return;
  const { model, now } = current;
  const open = model.peers.some((p) => !p.leave);
  const t0 = model.start.ms;
  let t1 = Math.max(model.end.ms, open ? now : model.end.ms);
  if (t1 <= t0) t1 = t0 + 1000;
  const width = Math.max(chart.clientWidth || 0, 720);
  const plotW = width - LABEL_W - PAD_R;
  const x = (ms) => LABEL_W + ((ms - t0) / (t1 - t0)) * plotW;
  const rows = model.peers.reduce((n, p) => n + PEER_H + p.tracks.length * TRACK_H, 0);
  const height = AXIS_H + rows + 8;
  current.scale = { t0, t1, x, left: LABEL_W, plotW };

  const svg = el("svg", { id: "timeline", width, height, viewBox: `0 0 ${width} ${height}`,
    "data-start": model.start.iso, "data-end": new Date(t1).toISOString() });
  const { step, out } = ticks(t0, t1, Math.max(2, Math.floor(plotW / 70)));
  const grid = el("g", { class: "axis" });
  grid.append(el("rect", { class: "axis-band", id: "axis", x: LABEL_W, y: 0, width: plotW, height: AXIS_H - 6 },
    undefined));
  grid.lastChild.append(el("title", {}, "click for the room's state at that instant"));
  for (const t of out) {
    grid.append(el("line", { class: "grid", x1: x(t), x2: x(t), y1: AXIS_H - 6, y2: height }));
    grid.append(el("text", { class: "tick-label", x: x(t), y: AXIS_H - 12, "text-anchor": "middle", "pointer-events": "none" },
      tickLabel(t, step, t1 - t0)));
  }
  grid.append(el("text", { class: "tick-label", x: 4, y: AXIS_H - 12 }, "UTC"));
  svg.append(grid);
  if (open) svg.append(el("line", { class: "now", x1: x(now), x2: x(now), y1: AXIS_H - 6, y2: height }));

  let y = AXIS_H;
  for (const p of model.peers) {
    const row = el("g", { class: "peer-row", "data-peer": p.id });
    const label = el("text", { class: "peer-label", x: 6, y: y + PEER_H / 2 + 4 }, peerLabel(p));
    label.append(el("title", {}, peerTitle(p)));
    row.append(label);
    const x0 = x(p.join.ms);
    const x1 = x(p.leave ? p.leave.ms : now);
    const bar = el("rect", { class: `peer-bar ${p.leave ? "closed" : "open"}`, "data-peer": p.id,
      "data-join": fmt(p.join), "data-leave": fmt(p.leave), x: x0, y: y + 5, width: Math.max(2, x1 - x0), height: PEER_H - 10, rx: 3 });
    bar.append(el("title", {}, peerTitle(p)));
    row.append(bar);
    y += PEER_H;
    for (const tr of p.tracks) {
      const trow = el("g", { class: "track-row", "data-peer": p.id, "data-track": tr.id });
      trow.append(el("text", { class: "track-label", x: 22, y: y + TRACK_H / 2 + 4 }, trackLabel(tr)));
      const a = x(tr.published.ms);
      const b = x(tr.unpublished ? tr.unpublished.ms : now);
      const tb = el("rect", { class: `track-bar kind-${tr.kind} ${tr.unpublished ? "closed" : "open"}`,
        "data-peer": p.id, "data-track": tr.id, "data-kind": tr.kind, "data-source": tr.source,
        "data-published": fmt(tr.published), "data-unpublished": fmt(tr.unpublished),
        x: a, y: y + 4, width: Math.max(2, b - a), height: TRACK_H - 8, rx: 2 });
      tb.append(el("title", {}, `${trackLabel(tr)} ${tr.codec} (track ${tr.id} of ${peerLabel(p)})\n` +
        `published ${tr.published.iso}\n${tr.unpublished ? `ended ${tr.unpublished.iso}` : "still published"}`));
      trow.append(tb);
      row.append(trow);
      y += TRACK_H;
    }
    svg.append(row);
  }
  if (current.cursor !== undefined) {
    svg.append(el("line", { class: "cursor", id: "cursor", x1: x(current.cursor), x2: x(current.cursor), y1: 0, y2: height }));
  }
  svg.addEventListener("click", onChartClick);
  chart.append(svg);
}

// --- state at an instant ---------------------------------------------------

async function onChartClick(ev) {
  if (!current || !current.scale) return;
  const { t0, t1, left, plotW } = current.scale;
  const rect = ev.currentTarget.getBoundingClientRect();
  const px = ev.clientX - rect.left;
  if (px < left || px > left + plotW) return;
  const ms = Math.round(t0 + ((px - left) / plotW) * (t1 - t0));
  current.cursor = ms;
  render();
  await showState(current.room, new Date(ms).toISOString());
}

async function showState(room, iso) {
  const box = $("state");
  box.dataset.state = "loading";
  box.dataset.at = iso;
  box.replaceChildren(el2("h2", `State at ${iso}`), el2("p", "loading…"));
  try {
    const res = await apiGet(room, `/v1/rooms/${encodeURIComponent(room)}/state?at=${encodeURIComponent(iso)}`);
    const st = await res.json();
    if (box.dataset.at !== iso) return; // a later click won
    const list = (title, items, cls) => {
      const ul = document.createElement("ul");
      ul.className = cls;
      for (const [text, attrs] of items) {
        const li = el2("li", text);
        for (const [k, v] of Object.entries(attrs)) li.dataset[k] = v;
        ul.append(li);
      }
      return [el2("strong", `${title} (${items.length})`), ul];
    };
    const names = new Map(st.peers.map((p) => [p.peer, p.name || p.identity || p.peer]));
    box.replaceChildren(el2("h2", `State at ${iso}`),
      ...list("Peers", st.peers.map((p) => [`${p.name || p.identity || p.peer} (peer ${p.peer}, ${p.transport} ${p.role}, since ${p.joined_at})`, { peer: p.peer }]), "state-peers"),
      ...list("Tracks", st.tracks.map((t) => [`${[t.kind, t.source].filter(Boolean).join(" · ")} ${t.codec} of ${names.get(t.peer) || t.peer} (track ${t.track}, since ${t.published_at})`, { track: t.track }]), "state-tracks"),
      ...list("Subscriptions", st.subscriptions.map((s) => [`${names.get(s.peer) || s.peer} ← ${s.track} of ${names.get(s.publisher) || s.publisher}`, { peer: s.peer, track: s.track }]), "state-subs"));
    box.dataset.state = "ready";
  } catch (err) {
    if (box.dataset.at !== iso) return;
    const msg = err instanceof HTTPError && err.status === 404 ? "the room had no events yet" : err.message;
    box.replaceChildren(el2("h2", `State at ${iso}`), el2("p", msg));
    box.dataset.state = err instanceof HTTPError && err.status === 404 ? "empty" : "error";
  }
}

function el2(tag, text) {
  const n = document.createElement(tag);
  n.textContent = text;
  return n;
}

// --- page -----------------------------------------------------------------

let loading = null; // AbortController of the load in progress

async function load(room) {
  if (loading) loading.abort();
  const ctl = new AbortController();
  loading = ctl;
  document.body.dataset.state = "loading";
  current = null;
  render();
  $("state").replaceChildren();
  setStatus(`loading ${room}…`);
  try {
    const model = newModel();
    const total = await loadEvents(room, ctl.signal, model.add, (n, page, ms) => {
      const rate = ms > 0 ? Math.round((n / ms) * 1000) : 0;
      setStatus(`loading ${room}: ${n.toLocaleString()} events (${page} page${page > 1 ? "s" : ""}, ${rate.toLocaleString()} events/s)…`);
    });
    if (ctl.signal.aborted) return;
    if (!model.start) throw new Error(`room ${room} has no events`);
    current = { room, model, now: Date.now() };
    render();
    const present = model.peers.filter((p) => !p.leave).length;
    setStatus(`${room}: ${total.toLocaleString()} events, ${model.peers.length} peers (${present} present), ` +
      `${model.peers.reduce((n, p) => n + p.tracks.length, 0)} tracks, from ${model.start.iso} to ${model.end.iso}. ` +
      "Click the chart for the state at that instant.");
    document.body.dataset.state = "ready";
  } catch (err) {
    if (ctl.signal.aborted) return;
    const msg = err instanceof HTTPError && err.status === 404 ? `room ${room} has no events` : err.message;
    setStatus(msg, true);
    document.body.dataset.state = "error";
  } finally {
    if (loading === ctl) loading = null;
  }
}

// fillRoomPicker offers the live rooms (GET /v1/rooms needs admin for every
// room); any other room can be typed. Failing quietly is fine: it is a hint.
async function fillRoomPicker() {
  try {
    const res = await apiGet("*", "/v1/rooms");
    const rooms = await res.json();
    $("rooms").replaceChildren(...rooms.map((r) => {
      const o = document.createElement("option");
      o.value = r.room;
      return o;
    }));
  } catch (err) {
    console.debug("room list unavailable:", err.message);
  }
}

function start() {
  const room = params.get("room") || "";
  $("room").value = room;
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const r = $("room").value.trim();
    if (!ROOM_ID.test(r)) {
      setStatus(`room "${r}" is not a valid id (1-64 of A-Z a-z 0-9 _ -)`, true);
      return;
    }
    const u = new URL(location.href);
    u.searchParams.set("room", r);
    history.replaceState(null, "", u);
    load(r);
  });
  let resize = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resize);
    resize = setTimeout(render, 150);
  });
  fillRoomPicker();
  if (room) {
    if (ROOM_ID.test(room)) load(room);
    else setStatus(`room "${room}" is not a valid id`, true);
  }
}

// For tests and the console: the x coordinate (in the chart's SVG) of an instant.
window.timeline = {
  xOf: (iso) => (current && current.scale ? current.scale.x(Date.parse(iso)) : NaN),
};

start();
