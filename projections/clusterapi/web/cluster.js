// jetmedia cluster page: the nodes of the system (their leases: zone, role, load, age), the
// replicas and leaders of the event log and the buckets, the links of the node serving the
// page, the edges whose logs the region's log copies and the edges it forgot, from GET
// /v1/cluster. Plain JavaScript, no build step. It writes one thing: forgetting a dead edge
// (POST /v1/cluster/nodes/<edge>/forget, as `jetmedia cluster forget`), after the operator
// typed the edge's name.
//
// Both endpoints need a token with the admin grant for every room (room "*"): the one pasted
// in the page, else, on a server in dev mode, none. Rows carry data-* attributes so that
// people can inspect them and tests can read the tables.

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;
// The region's source of an edge's log hears a heartbeat every second while the edge's
// JetStream answers (nats-server's source heartbeat): five missed ones is silence.
const SILENT_NS = 5e9;
// The server gives a forget 25 s and writes its answer within its 30 s write timeout; past
// this the page says it had no answer instead of waiting on.
const FORGET_TIMEOUT_MS = 40000;
// What POST .../forget accepts as a node name (presence's name rule).
const NAME = /^[A-Za-z0-9_-]{1,64}$/;

// The edge the forget dialog is open for: { domain, node } (node "" when its domain does not
// name it and the operator types it).
let pending = null;

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function bitrate(bps) {
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} Mb/s`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(0)} kb/s`;
  return `${bps} b/s`;
}

function row(cells, attrs = {}) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs)) tr.dataset[k] = String(v);
  for (const c of cells) {
    const td = document.createElement("td");
    if (typeof c === "number") td.className = "num";
    td.textContent = c === undefined || c === null || c === "" ? "–" : String(c);
    tr.append(td);
  }
  return tr;
}

function fill(id, rows, emptyText) {
  const body = $(id).tBodies[0];
  if (!rows.length && emptyText) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = document.createElement("td");
    td.colSpan = $(id).tHead.rows[0].cells.length;
    td.textContent = emptyText;
    tr.append(td);
    rows = [tr];
  }
  body.replaceChildren(...rows);
}

function authHeaders() {
  const tok = $("token").value.trim();
  return tok ? { Authorization: `Bearer ${tok}` } : {};
}

function seconds(ns) {
  return `${(ns / 1e9).toFixed(1)} s`;
}

// heard says when the region last heard from an edge's log (edge_sources' active, in ns;
// -1: not since its stream's leader started copying it).
function heard(e) {
  let s = e.active < 0 ? "not heard from" : `heard from ${seconds(e.active)} ago`;
  if (e.active < 0 || e.active > SILENT_NS) s += ": silent (dead or cut off)";
  if (e.error) s += `; ${e.error}`;
  return s;
}

function edgeRows(v) {
  // edge_sources is edges with their state; a server without it still names the domains.
  const sources = v.edge_sources ?? (v.edges ?? []).map((domain) => ({ domain, node: "", active: -1, lag: 0 }));
  return sources.map((e) => {
    const tr = row([e.node || "(its domain does not name it)", e.domain, heard(e), e.lag],
      { edge: e.domain, node: e.node ?? "", active: e.active });
    tr.cells[2].classList.add("heard");
    tr.classList.toggle("silent", e.active < 0 || e.active > SILENT_NS);
    const td = document.createElement("td");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "danger forget";
    b.textContent = "Forget…";
    b.addEventListener("click", () => openForget(e));
    td.append(b);
    tr.append(td);
    return tr;
  });
}

function forgottenRows(v) {
  return (v.forgotten ?? []).map((f) => row([f.node, f.domain, f.by, new Date(f.at).toLocaleString()],
    { forgotten: f.domain, node: f.node, by: f.by }));
}

function render(v) {
  fill("nodes", v.nodes.map((n) => {
    const age = (n.lease_age / 1e9).toFixed(1);
    const tr = row([n.name, n.zone, n.role, n.load.sessions, n.load.cpu.toFixed(2), bitrate(n.load.egress_bps),
      `${age} s ago${n.lost ? " (lost)" : ""}`, n.http], { node: n.name, lost: n.lost, sessions: n.load.sessions });
    tr.classList.toggle("lost", n.lost);
    tr.classList.toggle("self", n.name === v.node);
    return tr;
  }), "No node has announced itself.");
  fill("streams", v.streams.map((s) => row([s.name, s.replicas, s.leader, (s.peers ?? []).join(", "), s.messages],
    { stream: s.name, leader: s.leader ?? "" })));
  fill("links", v.links.map((l) => row([l.kind, l.remote, l.addr, l.outbound ? "out" : "in", l.rtt,
    `${l.in_msgs} / ${l.out_msgs}`, `${l.in_bytes} / ${l.out_bytes}`], { kind: l.kind, remote: l.remote })),
  "No route, gateway or leaf connection: this node runs on its own.");
  fill("edges", edgeRows(v), "No edge: the region's log copies no edge's log (a single node, routed nodes or media-only leaves).");
  fill("forgotten", forgottenRows(v), "No edge forgotten.");
  const lost = v.nodes.filter((n) => n.lost).length;
  const edges = (v.edges ?? []).length;
  setStatus(`${v.nodes.length} node(s)${lost ? `, ${lost} lost` : ""}, ${edges} edge(s), ${v.streams.length} stream(s); answered by ${v.node || "?"} at ${new Date().toLocaleTimeString()}`);
}

async function refresh() {
  const tok = $("token").value.trim();
  try {
    const res = await fetch("/v1/cluster", { headers: authHeaders(), cache: "no-store" });
    const body = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${body.trim()}`);
    render(JSON.parse(body));
  } catch (err) {
    setStatus(`${err.message}${tok ? "" : " (paste a token with the admin grant for room *: jetmedia token --room '*' --grants admin)"}`, true);
  }
}

// setResult shows a forget's answer under the edges; status is the HTTP status, or "pending"
// or "failed" (no answer), for people inspecting the page and for tests.
function setResult(text, isError, status) {
  const el = $("forget-result");
  el.textContent = text;
  el.classList.toggle("error", isError);
  el.dataset.status = String(status);
  delete el.dataset.ended;
  delete el.dataset.rooms;
}

function openForget(e) {
  pending = { domain: e.domain, node: e.node ?? "" };
  $("forget-title").textContent = `Forget edge ${pending.node || "?"} (JetStream domain ${e.domain})?`;
  $("forget-label").textContent = pending.node
    ? `Type the edge's name, ${pending.node}, to confirm:`
    : "This domain does not name its edge: type the edge's node name (its --name) to confirm. " +
      "A running edge is refused under any name (its domain holds a live lease).";
  const h = $("forget-heard");
  if (e.active >= 0 && e.active <= SILENT_NS) {
    h.textContent = `The region heard from this edge's log ${seconds(e.active)} ago: its JetStream answers. ` +
      "If its node still renews its lease the forget is refused: stop it first.";
    h.className = "warn";
  } else {
    h.textContent = e.active < 0 ? "The region has not heard from this edge's log since it started copying it."
      : `The region last heard from this edge's log ${seconds(e.active)} ago.`;
    h.className = "";
  }
  $("forget-name").value = "";
  $("forget-confirm").disabled = true;
  $("forget-dialog").showModal();
  $("forget-name").focus();
}

function typedName() {
  const typed = $("forget-name").value.trim();
  if (!pending) return "";
  if (pending.node) return typed === pending.node ? typed : "";
  return NAME.test(typed) ? typed : "";
}

// answerText says what a forget's answer means, as `jetmedia cluster forget` prints it.
function answerText(status, body, node, domain) {
  if (status === 200) {
    const r = JSON.parse(body);
    const at = new Date(r.at).toLocaleString();
    if (r.already && !r.source_removed && !r.ended) {
      return `edge ${r.node} (domain ${r.domain}) was forgotten already, by ${r.by} at ${at}: nothing to do`;
    }
    const lines = [`edge ${r.node} (domain ${r.domain}) forgotten by ${r.by} at ${at}`, `  its lease: ${r.lease}`];
    if (r.source_removed) lines.push("  the region's log no longer copies the edge's");
    lines.push(`  sessions ended in the region's log: ${r.ended} in ${r.rooms} room(s)`);
    if (r.remaining > 0) {
      lines.push(`  the rooms bucket still shows ${r.remaining} of its sessions (the projection lags?): forget it again later`);
    }
    return lines.join("\n");
  }
  const why = body.trim() || "(no message)";
  switch (status) {
    case 409: return `Refused (409): ${why}\nThe edge renews its lease: it is running. Stop it first, then forget it.`;
    case 404: return `Unknown edge (404): ${why}\nThe region's log copies no edge of domain ${domain}.`;
    case 400: return `Refused (400): ${why}`;
    case 401: case 403:
      return `Not allowed (${status}): ${why}\nPaste a token with the admin grant for room *.`;
    default: return `Forgetting ${node} failed (HTTP ${status}): ${why}\nEvery step is idempotent: try again.`;
  }
}

async function forget(node, domain) {
  setResult(`forgetting edge ${node} (domain ${domain})… the region reads its lease, then ends its sessions (up to 25 s)`, false, "pending");
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FORGET_TIMEOUT_MS);
  try {
    const res = await fetch(`/v1/cluster/nodes/${encodeURIComponent(node)}/forget`, {
      method: "POST",
      headers: { ...authHeaders(), "Content-Type": "application/json" },
      body: JSON.stringify({ domain }),
      cache: "no-store",
      signal: ctl.signal,
    });
    const body = await res.text();
    let text;
    try {
      text = answerText(res.status, body, node, domain);
    } catch (err) {
      throw new Error(`HTTP ${res.status}, an answer the page cannot read (${err.message}): ${body.slice(0, 500)}`);
    }
    setResult(text, res.status !== 200, res.status);
    if (res.status === 200) {
      const r = JSON.parse(body);
      $("forget-result").dataset.ended = String(r.ended);
      $("forget-result").dataset.rooms = String(r.rooms);
    }
  } catch (err) {
    const why = err.name === "AbortError" ? `no answer in ${FORGET_TIMEOUT_MS / 1000} s` : err.message;
    setResult(`Forgetting ${node}: ${why}\nIt may have been done in part; every step is idempotent: try again.`, true, "failed");
  } finally {
    clearTimeout(timer);
    refresh();
  }
}

$("forget-name").addEventListener("input", () => { $("forget-confirm").disabled = !typedName(); });
$("forget-cancel").addEventListener("click", () => $("forget-dialog").close());
$("forget-dialog").addEventListener("close", () => { pending = null; }); // Cancel, Esc or a forget sent
$("forget-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const node = typedName();
  if (!node) return;
  const { domain } = pending;
  $("forget-dialog").close();
  forget(node, domain);
});

$("form").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
$("token").addEventListener("change", refresh);
setInterval(() => { if ($("auto").checked) refresh(); }, REFRESH_MS);
refresh();
