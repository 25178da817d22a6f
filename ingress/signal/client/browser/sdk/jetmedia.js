// jetmedia browser SDK: join a jetmedia room from a web page.
//
// One ES module, no build step and no dependencies:
//
//   import { Room } from "/sdk/jetmedia.js";
//   const room = new Room({ token });
//   room.addEventListener("track", (e) => { video.srcObject = e.detail.stream; });
//   await room.join();
//   const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
//   for (const t of media.getTracks()) await room.publish(t);
//
// It speaks the signalling protocol of docs/rooms.md (schemas/signal, version 1) over a
// WebSocket at /rtc, with one RTCPeerConnection per room. The server is the only offerer:
// publish adds the track with addTrack (whose transceiver the server's receiving m-line takes,
// as JSEP associates an offer's recvonly m-line with an unassociated addTrack transceiver)
// and announces it; the SDK answers the server's offers and trickles ICE candidates both ways.
// A WebSocket that drops without a leave is resumed within the server's grace period with the
// resume token of the last joined, so the room does not see this peer leave.

/** The signalling protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;

/** Largest data message payload the server accepts, in UTF-8 bytes. */
export const MAX_PAYLOAD = 64 * 1024;

/** Largest peer metadata the server accepts, in UTF-8 bytes. */
export const MAX_METADATA = 4096;

/**
 * How many redirect messages (placement sending the join to another node) join() follows
 * before it fails.
 */
export const MAX_REDIRECTS = 3;

const encoder = new TextEncoder();

/**
 * An error from the server (an `error` message) or from the SDK itself. `code` is the
 * protocol's error code (`bad_request`, `unauthorized`, `forbidden`, `not_found`, `internal`,
 * `resume_expired`, `rate_limited`, `unavailable`, `full`: every node is at its session limit,
 * retry in a few seconds) or one of the SDK's (`disconnected`, `timeout`, `closed`, `resume_failed`,
 * `client`).
 */
export class JetmediaError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "JetmediaError";
    /** @type {string} */
    this.code = code;
  }
}

/**
 * @typedef {object} PeerInfo A peer as the room sees it.
 * @property {string} peer Peer id (one per session).
 * @property {string} [identity] The token's identity.
 * @property {string} [name] The token's display name.
 * @property {string} transport `sdk`, `whip`, `whep`, ...
 * @property {string} [metadata] Application metadata (join option, setMetadata).
 */

/**
 * @typedef {object} TrackInfo A published track as the room sees it.
 * @property {string} track Track id.
 * @property {string} peer Id of the publishing peer.
 * @property {"audio"|"video"} kind
 * @property {string} codec MIME type, e.g. `video/VP8`.
 * @property {string} [source] `camera`, `screen`, `mic` or free text.
 * @property {boolean} [muted]
 * @property {string[]} [layers] Layer ids (`0` without simulcast).
 */

/**
 * @typedef {object} Snapshot What join() resolves with: the room when this peer joined.
 * @property {string} room Room id.
 * @property {PeerInfo} self This peer.
 * @property {string[]} grants The token's grants.
 * @property {PeerInfo[]} peers The other peers.
 * @property {TrackInfo[]} tracks Every published track.
 */

/**
 * @typedef {object} RoomOptions
 * @property {string} token An access token (JWT) for the room.
 * @property {string} [url] The server: `https://host:port` (default: the page's origin; the
 *   WebSocket is `wss://host:port/rtc`, `ws:` for `http:`). A URL ending in `/rtc` or using
 *   `ws:`/`wss:` is taken as the WebSocket's own.
 * @property {string} [room] Room id (default: the token's room; needed for `*` tokens).
 * @property {string} [metadata] This peer's application metadata (at most 4096 bytes).
 * @property {boolean} [autoSubscribe=true] Receive every other peer's tracks; false to choose
 *   with subscribe().
 * @property {RTCConfiguration} [rtcConfiguration] For the RTCPeerConnection (ICE servers).
 * @property {number} [resumeWindow=10000] How long (ms) to try to resume a dropped WebSocket;
 *   match the server's `--resume-grace`.
 * @property {number} [timeout=30000] How long (ms) join() and publish() wait for the server.
 * @property {(direction: "client"|"server", message: string) => void} [trace] Sees every
 *   signalling message (for debugging and protocol tests).
 */

/**
 * A track this peer publishes, made by {@link Room#publish}.
 */
export class LocalTrack {
  #muted;
  #onMute;
  /** @type {string|null} */
  #id = null;

  /**
   * @param {MediaStreamTrack} track
   * @param {RTCRtpSender} sender
   * @param {string} source
   * @param {boolean} muted
   * @param {(track: LocalTrack, muted: boolean) => void} onMute
   * @hideconstructor
   */
  constructor(track, sender, source, muted, onMute) {
    /** The MediaStreamTrack being sent. @type {MediaStreamTrack} */
    this.track = track;
    /** @type {RTCRtpSender} */
    this.sender = sender;
    /** @type {string} */
    this.source = source;
    /** @type {"audio"|"video"} */
    this.kind = /** @type {"audio"|"video"} */ (track.kind);
    this.#muted = muted;
    this.#onMute = onMute;
  }

  /** The server's id of the track (set before publish() resolves). @type {string|null} */
  get id() { return this.#id; }

  /** @param {string} id @ignore */
  set id(id) {
    if (this.#id !== null) throw new Error("jetmedia: a LocalTrack's id is set once");
    this.#id = id;
  }

  /** Whether the track is muted (it then sends black video or silence). */
  get muted() { return this.#muted; }

  /** Mutes the track: it keeps its place but sends black frames or silence, and the room
   * sees track.muted = true (a trackupdated event). */
  mute() { this.setMuted(true); }

  /** Unmutes the track. */
  unmute() { this.setMuted(false); }

  /** @param {boolean} muted */
  setMuted(muted) {
    muted = Boolean(muted);
    if (muted === this.#muted) return;
    this.#muted = muted;
    this.track.enabled = !muted;
    this.#onMute(this, muted);
  }
}

/**
 * A jetmedia room. Events (all CustomEvents; the payload is in `event.detail`):
 * - `peerjoined`, `peerleft`, `peerupdated`: `{peer: PeerInfo}`
 * - `trackpublished`, `trackupdated`, `trackunpublished`: `{track: TrackInfo, local?: LocalTrack}`
 *   (`local` for this peer's own tracks)
 * - `track`: a remote MediaStreamTrack arrived: `{track, stream, peer: PeerInfo, trackId,
 *   receiver}`; `stream` holds all received tracks of that peer, its id is the peer id
 * - `subscription`: `{track: TrackInfo, state: "active"|"ended"}`
 * - `data`: `{from: string, to: string|null, payload: string}` (`to` is set for a message to
 *   this peer alone)
 * - `speakers`: `{speakers: {peer, track, level}[]}`: who speaks now, loudest first (level in
 *   -dBov, 0 loudest); empty when nobody does
 * - `error`: `{error: JetmediaError, code, message}` (a request the server refused, or a
 *   negotiation failure; the room goes on)
 * - `reconnecting`: `{}`; `reconnected`: `{attempts: number}`
 * - `left`: `{reason: "left"|"ended"|"disconnected"|"resume_expired"|..., error?: JetmediaError}`
 *   once, when the room is over for this object
 */
export class Room extends EventTarget {
  /** Other peers by id. @type {Map<string, PeerInfo>} */
  peers = new Map();
  /** Every published track of the room (this peer's too) by id. @type {Map<string, TrackInfo>} */
  tracks = new Map();
  /** Who speaks now, loudest first. @type {{peer: string, track: string, level: number}[]} */
  speakers = [];
  /** This peer (null before join resolves). @type {PeerInfo|null} */
  self = null;
  /** The token's grants. @type {string[]} */
  grants = [];
  /** The room id (null before join resolves). @type {string|null} */
  room = null;

  #opts;
  #wsURL;
  /** @type {"new"|"joining"|"joined"|"reconnecting"|"left"} */
  #state = "new";
  /** @type {WebSocket|null} */
  #ws = null;
  /** @type {RTCPeerConnection|null} */
  #pc = null;
  /** @type {string|null} */
  #resumeToken = null;
  #leaving = false;
  /** Messages sent while reconnecting, flushed once resumed. @type {object[]} */
  #queue = [];
  /** Offers, answers and candidates are applied in order. */
  #negotiation = Promise.resolve();
  /** mid → {stream, track} from the server's latest offer. @type {Map<string, {stream?: string, track?: string}>} */
  #mids = new Map();
  /** Published tracks not yet named by the server, in publish order. */
  /** Publish options that shape the answer: sender → {simulcast, codec}. @type {Map<RTCRtpSender, {simulcast: boolean, codec: string}>} */
  #sending = new Map();
  /** Simulcast publishes waiting for the server's offer. @type {{local: LocalTrack, stream?: MediaStream, codec: string}[]} */
  #layered = [];
  #pending = /** @type {{local: LocalTrack, muted: boolean, resolve: (l: LocalTrack) => void, reject: (e: Error) => void}[]} */ ([]);
  /** Own tracks by id. @type {Map<string, LocalTrack>} */
  #local = new Map();
  /** Received tracks by track id. @type {Map<string, {track: MediaStreamTrack, stream: MediaStream, receiver: RTCRtpReceiver}>} */
  #remote = new Map();
  /** @type {(() => void)|null} */
  #closed = null;
  /** Placeholder tracks by kind (see #shield). @type {Map<string, MediaStreamTrack>} */
  #placeholders = new Map();
  /** @type {AudioContext|null} */
  #audio = null;

  /** @param {RoomOptions} options */
  constructor(options) {
    super();
    if (!options || typeof options.token !== "string" || options.token === "") {
      throw new TypeError("jetmedia: new Room({token}) needs a token");
    }
    if (options.metadata !== undefined && encoder.encode(options.metadata).length > MAX_METADATA) {
      throw new RangeError(`jetmedia: metadata is over ${MAX_METADATA} bytes`);
    }
    this.#opts = { autoSubscribe: true, resumeWindow: 10000, timeout: 30000, ...options };
    this.#wsURL = signallingURL(options.url);
  }

  /** The room's state: new, joining, joined, reconnecting or left. */
  get state() { return this.#state; }

  /** The room's RTCPeerConnection (null before join), for getStats() and the like. */
  get peerConnection() { return this.#pc; }

  /** The tracks this peer publishes, by id. @type {ReadonlyMap<string, LocalTrack>} */
  get localTracks() { return this.#local; }

  /**
   * Joins the room. Resolves with the room's snapshot once the server accepted the token;
   * rejects with a {@link JetmediaError} (with its `code`) when it did not.
   * @returns {Promise<Snapshot>}
   */
  async join() {
    if (this.#state !== "new") throw new Error(`jetmedia: join() on a room that is ${this.#state}`);
    this.#state = "joining";
    this.#pc = this.#newPeerConnection();
    let joined;
    try {
      for (let redirects = 0; ; redirects++) {
        joined = await this.#open(null);
        if (joined.type !== "redirect") break;
        if (redirects === MAX_REDIRECTS) {
          throw new JetmediaError("client", `the join was sent on ${redirects + 1} times (last to ${joined.url}): giving up`);
        }
        // Placement: another node should serve this join; the same join goes there, and
        // resumes follow it.
        const next = redirectURL(joined.url, this.#wsURL);
        console.debug(`jetmedia: join redirected from ${this.#wsURL} to ${next}`);
        this.#wsURL = next;
      }
    } catch (err) {
      this.#pc.close();
      this.#state = "left";
      throw err;
    }
    if (this.#leaving) { // leave() was called while joining
      this.#sendOn(this.#ws, { type: "leave" });
      this.#finish("left");
      return this.#snapshot();
    }
    this.#apply(joined, false);
    this.#state = "joined";
    return this.#snapshot();
  }

  /**
   * Publishes a track: `await room.publish(track, {source: "camera"})`. Resolves with the
   * LocalTrack once the server has named it (its media is arriving).
   * @param {MediaStreamTrack} track
   * @param {{source?: string, muted?: boolean, stream?: MediaStream, simulcast?: boolean, codec?: string}} [options]
   *   source defaults to camera for video and mic for audio; muted publishes the track muted;
   *   simulcast sends video in three layers (SIMULCAST: a quarter, half and the whole size)
   *   that viewers choose from; codec (a MIME type, "video/H264") is the codec to send in,
   *   where the browser lets pages choose.
   * @returns {Promise<LocalTrack>}
   */
  async publish(track, options = {}) {
    this.#requireJoined("publish");
    if (!(track instanceof MediaStreamTrack)) throw new TypeError("jetmedia: publish needs a MediaStreamTrack");
    if (!this.grants.includes("publish")) throw new JetmediaError("forbidden", 'the token lacks the "publish" grant');
    const source = options.source ?? (track.kind === "video" ? "camera" : "mic");
    if (typeof source !== "string" || source.length === 0 || source.length > 64) {
      throw new RangeError("jetmedia: source is 1 to 64 characters");
    }
    const muted = Boolean(options.muted);
    const simulcast = Boolean(options.simulcast) && track.kind === "video";
    track.enabled = !muted;
    // In the negotiation queue: an offer being applied meanwhile could make a transceiver that
    // #shield has not seen yet and addTrack would reuse. A simulcast track waits for the
    // server's offer instead: Chromium gives an offer's simulcast m-line a transceiver of its
    // own (with one encoding per RID), never the one addTrack made.
    const sender = simulcast ? null : await this.#serialized(async () => {
      await this.#shield(track.kind);
      if (this.#pc === null) throw new JetmediaError("closed", "the room was left");
      return options.stream ? this.#pc.addTrack(track, options.stream) : this.#pc.addTrack(track);
    });
    if (sender && options.codec) this.#sending.set(sender, { simulcast, codec: options.codec });
    const local = new LocalTrack(track, sender, source, muted, (l, m) => {
      if (l.id !== null) this.#send({ type: "mute", track: l.id, muted: m });
    });
    if (simulcast) this.#layered.push({ local, stream: options.stream, codec: options.codec ?? "" });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending = this.#pending.filter((p) => p.local !== local);
        reject(new JetmediaError("timeout", `the server did not name the ${track.kind} track within ${this.#opts.timeout} ms (is its media flowing?)`));
      }, this.#opts.timeout);
      this.#pending.push({
        local, muted,
        resolve: (l) => { clearTimeout(timer); resolve(l); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      const m = { type: "publish", kind: track.kind, source, muted };
      if (simulcast) m.simulcast = SIMULCAST.map((e) => e.rid);
      // The server's offer then lists only this codec: Chromium answering an offer with
      // setCodecPreferences could otherwise start a simulcast track in the offer's first codec.
      if (options.codec) m.codec = options.codec;
      this.#send(m);
    });
  }

  /**
   * Stops publishing a track (the MediaStreamTrack itself is left running).
   * @param {LocalTrack} local
   */
  unpublish(local) {
    this.#requireJoined("unpublish");
    if (local.id === null) throw new Error("jetmedia: unpublish a track once publish() has resolved");
    this.#send({ type: "unpublish", track: local.id });
    this.#local.delete(local.id);
    if (this.#pc.getSenders().includes(local.sender)) this.#pc.removeTrack(local.sender);
  }

  /**
   * Receives a track (with autoSubscribe false, or again after unsubscribe); a `track` event
   * follows.
   * @param {string} trackId
   */
  subscribe(trackId) {
    this.#requireJoined("subscribe");
    this.#send({ type: "subscribe", track: trackId });
  }

  /**
   * Chooses the simulcast layer of a subscribed track: one of its `layers` (lowest first,
   * e.g. "q", "h", "f"), or "" to let the server choose from the bandwidth and the size the
   * track is shown at (see watchSize). The picture changes at the layer's next key frame.
   * @param {string} trackId
   * @param {string} quality
   */
  setQuality(trackId, quality) {
    this.#requireJoined("setQuality");
    this.#send({ type: "layer", track: trackId, quality });
  }

  /**
   * Tells the server the size a subscribed track is rendered at (pixels), so that it sends
   * the smallest simulcast layer that fills it.
   * @param {string} trackId
   * @param {number} width
   * @param {number} height
   */
  setViewSize(trackId, width, height) {
    this.#requireJoined("setViewSize");
    this.#send({ type: "layer", track: trackId, width: Math.round(width), height: Math.round(height) });
  }

  /**
   * Reports an element's rendered size for a subscribed track now and whenever it changes
   * (ResizeObserver, at most every 500 ms). Returns a function that stops watching.
   * @param {string} trackId
   * @param {Element} element
   */
  watchSize(trackId, element) {
    let timer = null;
    let last = "";
    const report = () => {
      timer = null;
      const r = element.getBoundingClientRect();
      const dpr = globalThis.devicePixelRatio || 1;
      const w = Math.round(r.width * dpr), h = Math.round(r.height * dpr);
      if (`${w}x${h}` === last || this.#ws === null) return;
      last = `${w}x${h}`;
      this.setViewSize(trackId, w, h);
    };
    const observer = new ResizeObserver(() => { timer ??= setTimeout(report, 500); });
    observer.observe(element);
    return () => { observer.disconnect(); if (timer) clearTimeout(timer); };
  }

  /** Stops receiving a track. @param {string} trackId */
  unsubscribe(trackId) {
    this.#requireJoined("unsubscribe");
    this.#send({ type: "unsubscribe", track: trackId });
  }

  /**
   * Sends a data message (text, at most 64 KiB) to the whole room, or to one peer with
   * `{to: peerId}`. Needs the data grant. Not part of the room's history.
   * @param {string} payload
   * @param {{to?: string}} [options]
   */
  send(payload, options = {}) {
    this.#requireJoined("send");
    if (typeof payload !== "string") throw new TypeError("jetmedia: send a string (JSON.stringify objects)");
    if (encoder.encode(payload).length > MAX_PAYLOAD) throw new RangeError(`jetmedia: payload is over ${MAX_PAYLOAD} bytes`);
    if (!this.grants.includes("data")) throw new JetmediaError("forbidden", 'the token lacks the "data" grant');
    const m = { type: "data", payload };
    if (options.to) m.to = options.to;
    this.#send(m);
  }

  /**
   * Changes this peer's metadata; the other peers get a peerupdated event.
   * @param {string} metadata At most 4096 bytes.
   */
  setMetadata(metadata) {
    this.#requireJoined("setMetadata");
    if (typeof metadata !== "string") throw new TypeError("jetmedia: metadata is a string");
    if (encoder.encode(metadata).length > MAX_METADATA) throw new RangeError(`jetmedia: metadata is over ${MAX_METADATA} bytes`);
    this.#send({ type: "update", metadata });
    this.self = { ...this.self, metadata };
  }

  /**
   * Leaves the room: the server records it and the others see peerleft. Resolves once the
   * server has closed the connection (or after two seconds). The app's MediaStreamTracks are
   * left running.
   * @returns {Promise<void>}
   */
  async leave() {
    if (this.#state === "left") return;
    this.#leaving = true;
    if (this.#state === "new") {
      this.#state = "left";
      return;
    }
    const ws = this.#ws;
    if (ws === null || ws.readyState !== WebSocket.OPEN) { // joining or reconnecting
      if (this.#state === "reconnecting") this.#finish("left");
      return;
    }
    const closed = new Promise((resolve) => { this.#closed = resolve; });
    this.#send({ type: "leave" });
    await Promise.race([closed, sleep(2000)]);
    this.#finish("left");
  }

  // ---- internals ----

  // #shield keeps addTrack off the transceivers the server's offers made for subscribed
  // tracks. Such a transceiver has no sending track and has never sent, so addTrack would
  // reuse it rather than make a new one; but its m-line is the server's sendonly one, so the
  // published track would never be sent, and the server's receiving m-line for it would find
  // no addTrack transceiver to take it. A placeholder track on their senders (they stay
  // recvonly, so it is never encoded or sent) makes them ineligible. replaceTrack settles
  // asynchronously and an offer may add transceivers meanwhile, hence the loop; the caller
  // calls addTrack right after, in the same task.
  async #shield(kind) {
    for (;;) {
      const open = this.#pc?.getTransceivers().filter((t) => t.mid !== null && t.currentDirection !== "stopped" &&
        t.sender.track === null && t.receiver.track.kind === kind) ?? [];
      if (open.length === 0) return;
      const placeholder = this.#placeholder(kind);
      await Promise.all(open.map((t) => t.sender.replaceTrack(placeholder).catch(() => {})));
      if (open.every((t) => t.sender.track === null)) return; // cannot shield them: give up rather than spin
    }
  }

  // #placeholder is a track of kind that produces nothing: a still canvas, or a silent audio
  // graph.
  #placeholder(kind) {
    let t = this.#placeholders.get(kind);
    if (t && t.readyState === "live") return t;
    if (kind === "video") {
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = 2;
      t = canvas.captureStream(0).getVideoTracks()[0];
    } else {
      this.#audio ??= new AudioContext();
      t = this.#audio.createMediaStreamDestination().stream.getAudioTracks()[0];
    }
    this.#placeholders.set(kind, t);
    return t;
  }

  #snapshot() {
    return { room: this.room, self: this.self, grants: [...this.grants],
      peers: [...this.peers.values()], tracks: [...this.tracks.values()] };
  }

  #requireJoined(what) {
    if (this.#state !== "joined" && this.#state !== "reconnecting") {
      throw new Error(`jetmedia: ${what}() on a room that is ${this.#state}`);
    }
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #emitError(err) {
    this.#emit("error", { error: err, code: err.code, message: err.message });
  }

  #newPeerConnection() {
    const pc = new RTCPeerConnection(this.#opts.rtcConfiguration);
    pc.addEventListener("icecandidate", (e) => {
      if (e.candidate && e.candidate.candidate) this.#send({ type: "candidate", candidate: e.candidate.toJSON() });
    });
    pc.addEventListener("track", (e) => this.#onTrack(e));
    return pc;
  }

  /**
   * Opens a WebSocket and joins (resume: the resume token, or null), waiting at most timeout
   * ms for the answer. Resolves with the joined message, the socket attached, or (a new
   * join only) with a redirect message, the socket closed; rejects with a JetmediaError whose `retry` says whether the
   * failure was the network's (worth another try) rather than the server's answer.
   * @returns {Promise<any>}
   */
  #open(resume, timeout = this.#opts.timeout) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.#wsURL);
      let settled = false;
      const fail = (code, message, retry) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try { ws.close(); } catch { /* already closed */ }
        const err = new JetmediaError(code, message);
        err.retry = retry;
        reject(err);
      };
      const timer = setTimeout(() => fail("timeout", `no answer to join within ${timeout} ms`, true), timeout);
      ws.onopen = () => {
        const m = { type: "join", version: PROTOCOL_VERSION, token: this.#opts.token };
        if (this.#opts.room) m.room = this.#opts.room;
        if (this.#opts.metadata) m.metadata = this.#opts.metadata;
        m.auto_subscribe = this.#opts.autoSubscribe !== false;
        if (resume) m.resume = resume;
        this.#sendOn(ws, m);
      };
      ws.onmessage = (ev) => {
        const m = this.#parse(ev.data);
        if (!m) return;
        if (m.type === "error") return fail(m.code, m.message, false);
        if (m.type === "redirect" && !resume && typeof m.url === "string") {
          // Nothing was recorded; the server closes the socket normally.
          settled = true;
          clearTimeout(timer);
          ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
          try { ws.close(); } catch { /* already closed */ }
          return resolve(m);
        }
        if (m.type !== "joined") return fail("client", `expected joined, got ${m.type}`, false);
        settled = true;
        clearTimeout(timer);
        this.#ws = ws;
        ws.onmessage = (e) => { const msg = this.#parse(e.data); if (msg) this.#onMessage(msg); };
        ws.onclose = (e) => this.#onClose(ws, e);
        ws.onerror = null;
        resolve(m);
      };
      ws.onerror = () => { /* onclose follows with the code */ };
      ws.onclose = (e) => fail("disconnected", `the connection to ${this.#wsURL} closed before joined (${e.code}${e.reason ? " " + e.reason : ""})`, true);
    });
  }

  #parse(text) {
    this.#opts.trace?.("server", text);
    try {
      const m = JSON.parse(text);
      return m && typeof m.type === "string" ? m : null;
    } catch {
      return null;
    }
  }

  #sendOn(ws, m) {
    const text = JSON.stringify(m);
    this.#opts.trace?.("client", text);
    ws.send(text);
  }

  // #send sends m now, or queues it while reconnecting. Negotiation messages are dropped then:
  // the server re-sends an offer that was not answered.
  #send(m) {
    if (this.#ws && this.#ws.readyState === WebSocket.OPEN && this.#state !== "reconnecting") {
      this.#sendOn(this.#ws, m);
    } else if (this.#state === "reconnecting" && m.type !== "answer" && m.type !== "candidate") {
      this.#queue.push(m);
    }
  }

  #onClose(ws, e) {
    if (ws !== this.#ws) return;
    this.#ws = null;
    this.#closed?.();
    if (this.#leaving || this.#state === "left") return; // leave() finishes
    // 1000 "left": the server ended the session (a leave, failed media, shutdown);
    // 1008: it refused something fatal (an error message came first).
    if (e.code === 1000 || e.code === 1008) {
      this.#finish("ended", new JetmediaError("closed", `the server closed the connection (${e.code}${e.reason ? " " + e.reason : ""})`));
      return;
    }
    if (!this.#resumeToken) {
      this.#finish("disconnected", new JetmediaError("disconnected", `the connection dropped (${e.code}) and the server offered no resume`));
      return;
    }
    this.#reconnect();
  }

  async #reconnect() {
    this.#state = "reconnecting";
    this.#emit("reconnecting", {});
    const deadline = performance.now() + this.#opts.resumeWindow;
    let delay = 200;
    for (let attempt = 1; ; attempt++) {
      let joined;
      try {
        // An attempt never outlasts the window (a connection may hang rather than fail).
        joined = await this.#open(this.#resumeToken, Math.max(1000, deadline - performance.now()));
      } catch (err) {
        if (this.#state === "left") return; // left meanwhile
        if (!err.retry || performance.now() + delay >= deadline) {
          const code = err.retry ? "resume_expired" : err.code;
          this.#finish(code === "resume_expired" ? "resume_expired" : "disconnected", err.retry ? new JetmediaError("resume_expired", `could not reconnect within ${this.#opts.resumeWindow} ms: ${err.message}`) : err);
          return;
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
        if (this.#state === "left") return;
        continue;
      }
      if (this.#state === "left") { // left while this attempt was under way
        this.#sendOn(this.#ws, { type: "leave" });
        this.#ws.close();
        return;
      }
      if (joined.resumed !== true) {
        // The server started a new session: the old one (and its PeerConnection) is gone.
        this.#sendOn(this.#ws, { type: "leave" });
        this.#finish("resume_expired", new JetmediaError("resume_failed", "the server did not resume the session"));
        return;
      }
      this.#apply(joined, true);
      this.#state = "joined";
      const queued = this.#queue;
      this.#queue = [];
      for (const m of queued) this.#send(m);
      this.#emit("reconnected", { attempts: attempt });
      return;
    }
  }

  // #finish ends the room for this object: once, with a left event.
  #finish(reason, err) {
    if (this.#state === "left" && this.#pc === null) return;
    this.#state = "left";
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = null;
      try { ws.close(); } catch { /* closed */ }
    }
    this.#pc?.close();
    this.#pc = null;
    for (const t of this.#placeholders.values()) t.stop();
    this.#placeholders.clear();
    this.#audio?.close().catch(() => {});
    this.#audio = null;
    for (const p of this.#pending) p.reject(err ?? new JetmediaError("closed", "the room was left"));
    this.#pending = [];
    if (err) this.#emitError(err);
    this.#emit("left", err ? { reason, error: err } : { reason });
  }

  // #apply takes a joined message: the first one as it is, a resumed one diffed against what
  // this object knew, with an event for each difference.
  #apply(joined, resumed) {
    this.room = joined.room;
    this.self = joined.self;
    this.grants = joined.grants ?? [];
    this.#resumeToken = joined.resume_token ?? null;
    const peers = new Map();
    for (const p of joined.peers ?? []) if (p.peer !== this.self.peer) peers.set(p.peer, p);
    const tracks = new Map((joined.tracks ?? []).map((t) => [t.track, t]));
    if (!resumed) {
      for (const [id, p] of peers) this.peers.set(id, p);
      for (const [id, t] of tracks) this.tracks.set(id, t);
      return;
    }
    for (const [id, t] of [...this.tracks]) {
      if (!tracks.has(id)) this.#trackGone(t);
    }
    for (const [id, p] of [...this.peers]) {
      if (!peers.has(id)) {
        this.peers.delete(id);
        this.#emit("peerleft", { peer: p });
      }
    }
    for (const [id, p] of peers) {
      const old = this.peers.get(id);
      this.peers.set(id, p);
      if (!old) this.#emit("peerjoined", { peer: p });
      else if (old.metadata !== p.metadata || old.name !== p.name) this.#emit("peerupdated", { peer: p });
    }
    for (const [id, t] of tracks) {
      const old = this.tracks.get(id);
      if (!old) this.#trackPublished(t);
      else {
        this.tracks.set(id, t);
        if (Boolean(old.muted) !== Boolean(t.muted)) this.#emit("trackupdated", this.#trackDetail(t));
      }
    }
  }

  #trackDetail(t) {
    const local = this.#local.get(t.track);
    return local ? { track: t, local } : { track: t };
  }

  #trackPublished(t) {
    this.tracks.set(t.track, t);
    if (t.peer === this.self.peer && !this.#local.has(t.track)) this.#name(t);
    this.#emit("trackpublished", this.#trackDetail(t));
  }

  #trackGone(t) {
    this.tracks.delete(t.track);
    this.#remote.delete(t.track);
    const detail = this.#trackDetail(t);
    this.#local.delete(t.track);
    this.#emit("trackunpublished", detail);
  }

  // #name gives this peer's oldest pending publish of the track's kind the server's id.
  #name(t) {
    const i = this.#pending.findIndex((p) => p.local.kind === t.kind);
    if (i < 0) return;
    const [p] = this.#pending.splice(i, 1);
    p.local.id = t.track;
    this.#local.set(t.track, p.local);
    if (p.local.muted !== p.muted) this.#send({ type: "mute", track: t.track, muted: p.local.muted });
    p.resolve(p.local);
  }

  #onMessage(m) {
    switch (m.type) {
      case "offer":
        this.#negotiate(() => this.#onOffer(m.sdp));
        break;
      case "answer": // the SDK never offers; kept for a server that answers anyway
        this.#negotiate(async () => {
          if (this.#pc?.signalingState === "have-local-offer") await this.#pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
        });
        break;
      case "candidate":
        this.#negotiate(async () => {
          if (!this.#pc || !m.candidate?.candidate) return;
          try {
            await this.#pc.addIceCandidate(m.candidate);
          } catch (err) {
            // A candidate for an m-line that is gone, or one that came before its offer.
            console.debug("jetmedia: remote candidate not added:", err);
          }
        });
        break;
      case "peer_joined":
        if (!m.peer || m.peer.peer === this.self.peer) break;
        this.peers.set(m.peer.peer, m.peer);
        this.#emit("peerjoined", { peer: m.peer });
        break;
      case "peer_left":
        if (!m.peer) break;
        this.peers.delete(m.peer.peer);
        this.#emit("peerleft", { peer: m.peer });
        break;
      case "peer_updated":
        if (!m.peer) break;
        if (m.peer.peer === this.self.peer) this.self = m.peer;
        else this.peers.set(m.peer.peer, m.peer);
        this.#emit("peerupdated", { peer: m.peer });
        break;
      case "track_published":
        if (m.track) this.#trackPublished(m.track);
        break;
      case "track_updated":
        if (!m.track) break;
        this.tracks.set(m.track.track, m.track);
        this.#emit("trackupdated", this.#trackDetail(m.track));
        break;
      case "track_unpublished":
        if (m.track) this.#trackGone(m.track);
        break;
      case "subscription":
        if (m.track) this.#emit("subscription", { track: m.track, state: m.state });
        break;
      case "data":
        this.#emit("data", { from: m.from, to: m.to ?? null, payload: m.payload ?? "" });
        break;
      case "speakers":
        // Who speaks now, loudest first ({peer, track, level}); empty: nobody.
        this.speakers = m.speakers ?? [];
        this.#emit("speakers", { speakers: this.speakers });
        break;
      case "layers_active": {
        // Layers of our own simulcast track nobody receives: stop encoding them until the
        // server names them again (the lowest is always named).
        const local = this.#local.get(m.layers_active?.track ?? "");
        const layers = m.layers_active?.layers ?? [];
        if (local?.sender && layers.length > 0) this.#negotiate(() => activeEncodings(local.sender, layers));
        break;
      }
      case "error":
        this.#emitError(new JetmediaError(m.code, m.message));
        break;
    }
  }

  // #serialized runs step in the negotiation queue (after any offer being applied) and
  // returns its result; a failure goes to the caller, not to the queue.
  #serialized(step) {
    const run = this.#negotiation.then(step);
    this.#negotiation = run.catch(() => {});
    return run;
  }

  #negotiate(step) {
    this.#negotiation = this.#negotiation.then(step).catch((err) => {
      if (this.#state !== "left") this.#emitError(new JetmediaError("client", `negotiation: ${err?.message ?? err}`));
    });
  }

  async #onOffer(sdp) {
    const pc = this.#pc;
    if (!pc) return;
    // Before setRemoteDescription, which fires the track events that look the mids up.
    this.#mids = msidsByMid(sdp);
    await pc.setRemoteDescription({ type: "offer", sdp });
    await this.#attachLayered(pc);
    for (const t of pc.getTransceivers()) {
      const want = this.#sending.get(t.sender);
      if (want?.codec) preferCodec(t, want.codec);
    }
    await pc.setLocalDescription(); // the answer; candidates trickle after it
    this.#send({ type: "answer", sdp: pc.localDescription.sdp });
    for (const [sender, want] of this.#sending) {
      if (want.simulcast) await layerEncodings(sender);
    }
  }

  // #attachLayered gives each waiting simulcast publish one of the transceivers the offer just
  // made for a simulcast m-line (no track yet, several encodings) and sends on it.
  async #attachLayered(pc) {
    for (const t of pc.getTransceivers()) {
      if (this.#layered.length === 0) return;
      if (t.stopped || t.currentDirection !== null || t.sender.track !== null || t.receiver.track.kind !== "video") continue;
      if ((t.sender.getParameters().encodings ?? []).length < 2) continue;
      const w = this.#layered.shift();
      await t.sender.replaceTrack(w.local.track);
      if (w.stream) t.sender.setStreams(w.stream);
      t.direction = "sendonly";
      w.local.sender = t.sender;
      this.#sending.set(t.sender, { simulcast: true, codec: w.codec });
    }
  }

  /** @param {RTCTrackEvent} e */
  #onTrack(e) {
    const ids = this.#mids.get(e.transceiver?.mid ?? "") ?? {};
    const stream = e.streams[0] ?? new MediaStream([e.track]);
    const peerId = ids.stream ?? stream.id;
    const trackId = ids.track ?? e.track.id;
    this.#remote.set(trackId, { track: e.track, stream, receiver: e.receiver });
    const peer = this.peers.get(peerId) ?? { peer: peerId, transport: "sdk" };
    this.#emit("track", { track: e.track, stream, peer, trackId, receiver: e.receiver });
  }

  /**
   * The received MediaStreamTrack of a remote track, if it arrived.
   * @param {string} trackId
   * @returns {{track: MediaStreamTrack, stream: MediaStream, receiver: RTCRtpReceiver}|undefined}
   */
  remoteTrack(trackId) { return this.#remote.get(trackId); }
}

/**
 * The simulcast layers a publish with `simulcast: true` sends, lowest first: the server's
 * offer asks for these RIDs, and each encoding is scaled and capped (bit/s) here.
 */
export const SIMULCAST = Object.freeze([
  Object.freeze({ rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 }),
]);

// layerEncodings sizes a simulcast sender's encodings (made from the offer's RIDs) as
// SIMULCAST says.
async function layerEncodings(sender) {
  const p = sender.getParameters();
  if (!p.encodings || p.encodings.length < 2) return;
  let changed = false;
  for (const e of p.encodings) {
    const want = SIMULCAST.find((s) => s.rid === e.rid);
    if (want && (e.scaleResolutionDownBy !== want.scaleResolutionDownBy || e.maxBitrate !== want.maxBitrate)) {
      e.scaleResolutionDownBy = want.scaleResolutionDownBy;
      e.maxBitrate = want.maxBitrate;
      changed = true;
    }
  }
  if (changed) await sender.setParameters(p);
}

// activeEncodings sends the encodings of a simulcast sender whose RIDs are in layers and
// pauses the others (the server's layers_active).
async function activeEncodings(sender, layers) {
  const p = sender.getParameters();
  if (!p.encodings || p.encodings.length < 2) return;
  let changed = false;
  for (const e of p.encodings) {
    const want = layers.includes(e.rid);
    if (e.active !== want) {
      e.active = want;
      changed = true;
    }
  }
  if (changed) await sender.setParameters(p);
}

// preferCodec puts mime first among a transceiver's codecs, where the browser lets pages
// choose (the answer then sends in it).
function preferCodec(transceiver, mime) {
  if (!transceiver.setCodecPreferences || !globalThis.RTCRtpReceiver?.getCapabilities) return;
  const codecs = RTCRtpReceiver.getCapabilities("video")?.codecs ?? [];
  const want = codecs.filter((c) => c.mimeType.toLowerCase() === mime.toLowerCase());
  if (want.length === 0) throw new JetmediaError("client", `this browser cannot send ${mime}`);
  transceiver.setCodecPreferences([...want, ...codecs.filter((c) => !want.includes(c))]);
}

// redirectURL resolves a redirect message's url against the WebSocket URL the join used.
function redirectURL(url, base) {
  let u;
  try {
    u = new URL(url, base);
  } catch {
    throw new JetmediaError("client", `the server redirected the join to ${url}, not a URL`);
  }
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  else if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new JetmediaError("client", `the server redirected the join to ${url}, not a WebSocket URL`);
  }
  u.hash = "";
  return u.href;
}

// signallingURL turns the url option into the WebSocket's URL.
function signallingURL(url) {
  const u = new URL(url ?? "/", globalThis.location?.href);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  else if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new TypeError(`jetmedia: url ${url}: want http(s) or ws(s)`);
  if (!u.pathname.endsWith("/rtc")) u.pathname = u.pathname.replace(/\/?$/, "/rtc");
  u.hash = "";
  return u.href;
}

// msidsByMid reads each m-line's a=mid and a=msid (stream id = publishing peer, track id =
// jetmedia track id): a receiving track's own id is made up by the browser.
function msidsByMid(sdp) {
  const out = new Map();
  let cur = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith("m=")) cur = {};
    else if (cur && line.startsWith("a=mid:")) out.set(line.slice(6).trim(), cur);
    else if (cur && line.startsWith("a=msid:")) {
      const [stream, track] = line.slice(7).trim().split(/\s+/);
      cur.stream = stream;
      cur.track = track;
    }
  }
  return out;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
