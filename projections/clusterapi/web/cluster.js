// jetmedia cluster page: the nodes of the system (their leases: zone, role, load, age), the
// replicas and leaders of the event log and the buckets, and the links of the node serving
// the page, from GET /v1/cluster. Plain JavaScript, no build step; it never writes anything.
//
// The endpoint needs a token with the admin grant for every room (room "*"): the one pasted
// in the page, else, on a server in dev mode, none. Rows carry data-* attributes so that
// people can inspect them and tests can read the tables.

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;

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

function fill(id, rows) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...rows);
}

function render(v) {
  fill("nodes", v.nodes.map((n) => {
    const age = (n.lease_age / 1e9).toFixed(1);
    const tr = row([n.name, n.zone, n.role, n.load.sessions, n.load.cpu.toFixed(2), bitrate(n.load.egress_bps),
      `${age} s ago${n.lost ? " (lost)" : ""}`, n.http], { node: n.name, lost: n.lost, sessions: n.load.sessions });
    tr.classList.toggle("lost", n.lost);
    tr.classList.toggle("self", n.name === v.node);
    return tr;
  }));
  fill("streams", v.streams.map((s) => row([s.name, s.replicas, s.leader, (s.peers ?? []).join(", "), s.messages],
    { stream: s.name, leader: s.leader ?? "" })));
  fill("links", v.links.map((l) => row([l.kind, l.remote, l.addr, l.outbound ? "out" : "in", l.rtt,
    `${l.in_msgs} / ${l.out_msgs}`, `${l.in_bytes} / ${l.out_bytes}`], { kind: l.kind, remote: l.remote })));
  const lost = v.nodes.filter((n) => n.lost).length;
  setStatus(`${v.nodes.length} node(s)${lost ? `, ${lost} lost` : ""}, ${v.streams.length} stream(s); answered by ${v.node || "?"} at ${new Date().toLocaleTimeString()}`);
}

async function refresh() {
  const headers = {};
  const tok = $("token").value.trim();
  if (tok) headers.Authorization = `Bearer ${tok}`;
  try {
    const res = await fetch("/v1/cluster", { headers, cache: "no-store" });
    const body = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${body.trim()}`);
    render(JSON.parse(body));
  } catch (err) {
    setStatus(`${err.message}${tok ? "" : " (paste a token with the admin grant for room *: jetmedia token --room '*' --grants admin)"}`, true);
  }
}

$("form").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
$("token").addEventListener("change", refresh);
setInterval(() => { if ($("auto").checked) refresh(); }, REFRESH_MS);
refresh();
