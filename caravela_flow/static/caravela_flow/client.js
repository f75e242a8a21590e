/**
 * caravela_flow browser client: follows one flow over a WebSocket.
 *
 * Framework-free ES module (browsers and Node 20, no build step). It resyncs
 * from the server's snapshot on every (re)connect, drops stale versions and
 * reconnects with exponential backoff after abnormal closes.
 * Reference: docs/client.md.
 */

export const VERSION = "0.1.0";

/** Normal close: the server is done with us; do not reconnect. */
export const CLOSE_NORMAL = 1000;
/** Subscription refused (missing, forged, expired or foreign token); never retried. */
export const CLOSE_REFUSED = 4403;
/** The flow is gone (not running and no longer retained); never retried. */
export const CLOSE_GONE = 4404;

/** Reconnect delays in ms: min(max, base * factor^(attempt-1)), then jitter. */
export const DEFAULT_BACKOFF = Object.freeze({ base: 500, factor: 2, max: 15000, jitter: "full" });

const EVENTS = new Set(["snapshot", "state", "done", "error", "stopped"]);
const FINAL_EVENTS = { done: "done", error: "failed", stopped: "stopped" };
const STATUSES = new Set(["running", "done", "failed", "stopped"]);
const JITTERS = new Set(["full", "equal", "none"]);

const INITIAL = Object.freeze({
  state: null,
  status: "connecting",
  connection: "connecting",
  version: null,
  reason: null,
  flowId: null,
});

/**
 * Turn a path such as "/ws/flows/<token>/" into a ws:/wss: URL against `base`
 * (default: `location`); http: becomes ws:, https: becomes wss:.
 * Without a base, a relative URL is returned unchanged.
 */
export function resolveSocketUrl(url, base = globalThis.location) {
  const text = String(url);
  let resolved;
  try {
    resolved = base ? new URL(text, String(base.href ?? base)) : new URL(text);
  } catch {
    return text;
  }
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}

/**
 * Delay in ms before reconnect attempt `attempt` (1, 2, …).
 * Jitter "full" draws from [0, d], "equal" from [d/2, d], "none" gives d.
 */
export function backoffDelay(attempt, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const { base, factor, max, jitter } = normalizeBackoff(backoff);
  const delay = Math.min(max, base * factor ** Math.max(0, attempt - 1));
  if (jitter === "full") return delay * random();
  if (jitter === "equal") return delay / 2 + (delay / 2) * random();
  return delay;
}

function normalizeBackoff(options = {}) {
  const backoff = { ...DEFAULT_BACKOFF, ...options };
  if (backoff.jitter === true) backoff.jitter = "full";
  if (backoff.jitter === false || backoff.jitter == null) backoff.jitter = "none";
  for (const key of ["base", "factor", "max"]) {
    if (typeof backoff[key] !== "number" || !(backoff[key] >= 0)) {
      throw new TypeError(`caravela_flow: backoff.${key} must be a number >= 0, got ${backoff[key]}`);
    }
  }
  if (!JITTERS.has(backoff.jitter)) {
    throw new TypeError(`caravela_flow: backoff.jitter must be "full", "equal", "none" or a boolean, got ${backoff.jitter}`);
  }
  return backoff;
}

/**
 * A live subscription to one flow. Read it through the getters or
 * `subscribe()`; end it with `close()`. `connectFlow(url, options)` is the
 * same as `new FlowConnection(url, options)`.
 */
export class FlowConnection {
  #url;
  #WebSocket;
  #backoff;
  #random;
  #setTimer;
  #clearTimer;
  #logger;
  #socket = null;
  #timer = null;
  #attempt = 0;
  #finished = false;
  #listeners = new Set();
  #snapshot = INITIAL;

  constructor(url, options = {}) {
    const WebSocketImpl = options.WebSocketImpl ?? globalThis.WebSocket;
    if (typeof WebSocketImpl !== "function") {
      throw new TypeError("caravela_flow: no WebSocket implementation; pass options.WebSocketImpl");
    }
    const set = options.setTimeout ?? globalThis.setTimeout;
    const clear = options.clearTimeout ?? globalThis.clearTimeout;
    const random = options.random ?? Math.random;
    this.#url = resolveSocketUrl(url, "location" in options ? options.location : globalThis.location);
    this.#WebSocket = WebSocketImpl;
    this.#backoff = normalizeBackoff(options.backoff);
    this.#setTimer = (fn, ms) => set(fn, ms);
    this.#clearTimer = (id) => clear(id);
    this.#random = () => random();
    this.#logger = options.logger ?? console;
    if (options.onChange) this.subscribe(options.onChange);
    this.#open();
  }

  /** The resolved WebSocket URL. */
  get url() { return this.#url; }
  /** The flow's state as last received (treat as read-only), or null before the first snapshot. */
  get state() { return this.#snapshot.state; }
  /** "connecting" until the first snapshot, then "running" | "done" | "failed" | "stopped". */
  get status() { return this.#snapshot.status; }
  /** "connecting" | "open" | "reconnecting" | "closed" | "refused" | "gone". */
  get connection() { return this.#snapshot.connection; }
  /** Version of the last applied message, or null. */
  get version() { return this.#snapshot.version; }
  /** The failure reason after an "error" event, else null. */
  get reason() { return this.#snapshot.reason; }
  /** The flow id, known from the first message. */
  get flowId() { return this.#snapshot.flowId; }

  /**
   * Call `fn({state, status, connection, version, reason, flowId})` now and
   * after every change. Returns an unsubscribe function.
   */
  subscribe(fn) {
    if (typeof fn !== "function") throw new TypeError("caravela_flow: subscribe() needs a function");
    const entry = { fn };
    this.#listeners.add(entry);
    this.#call(entry, this.#snapshot);
    return () => { this.#listeners.delete(entry); };
  }

  /** Close the socket normally and stop reconnecting. */
  close() {
    if (!this.#finished) this.#finish({ connection: "closed" });
  }

  #open() {
    let socket;
    try {
      socket = new this.#WebSocket(this.#url);
    } catch (error) {
      this.#logger.error("caravela_flow: cannot open WebSocket", this.#url, error);
      this.#finish({ connection: "closed" });
      return;
    }
    this.#socket = socket;
    // An "error" event is always followed by "close", so only "close" is handled.
    socket.onmessage = (event) => { if (this.#socket === socket) this.#receive(event.data); };
    socket.onclose = (event) => { if (this.#socket === socket) this.#closed(event.code); };
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      this.#logger.warn("caravela_flow: ignoring unparsable frame", data);
      return;
    }
    if (!message || typeof message !== "object" || !EVENTS.has(message.event)) {
      this.#logger.warn("caravela_flow: ignoring unknown event", message);
      return;
    }
    if (!Number.isFinite(message.version)) {
      this.#logger.warn("caravela_flow: ignoring frame without a version", message);
      return;
    }
    const { flowId } = this.#snapshot;
    if (flowId !== null && message.flow_id !== undefined && message.flow_id !== flowId) {
      this.#logger.warn("caravela_flow: ignoring frame for another flow", message);
      return;
    }
    if (message.event === "snapshot") this.#applySnapshot(message);
    else this.#applyUpdate(message);
  }

  #applySnapshot(message) {
    this.#attempt = 0;
    const current = this.#snapshot.version;
    if (current !== null && message.version < current) {
      this.#update({ connection: "open" }); // stale: we already know newer state
      return;
    }
    let status = message.status;
    if (!STATUSES.has(status)) {
      this.#logger.warn("caravela_flow: unknown status in snapshot", status);
      status = "running";
    }
    const patch = {
      connection: "open",
      state: message.state ?? null,
      status,
      version: message.version,
      reason: typeof message.reason === "string" ? message.reason : null,
      flowId: message.flow_id ?? this.#snapshot.flowId,
    };
    if (status === "running") this.#update(patch);
    else this.#finish({ ...patch, connection: "closed" });
  }

  #applyUpdate(message) {
    const current = this.#snapshot.version;
    if (current !== null && message.version <= current) return; // already applied
    const patch = {
      version: message.version,
      flowId: message.flow_id ?? this.#snapshot.flowId,
    };
    if (message.event === "error") patch.reason = String(message.reason ?? "");
    else patch.state = message.state ?? null;
    if (message.event === "state") {
      this.#update({ ...patch, status: "running" });
    } else {
      this.#finish({ ...patch, status: FINAL_EVENTS[message.event], connection: "closed" });
    }
  }

  #closed(code) {
    this.#socket = null;
    if (code === CLOSE_REFUSED) return this.#finish({ connection: "refused" });
    if (code === CLOSE_GONE) return this.#finish({ connection: "gone" });
    if (code === CLOSE_NORMAL) return this.#finish({ connection: "closed" });
    this.#attempt += 1;
    const delay = backoffDelay(this.#attempt, this.#backoff, this.#random);
    this.#timer = this.#setTimer(() => {
      this.#timer = null;
      if (!this.#finished) this.#open();
    }, delay);
    this.#update({ connection: "reconnecting" });
  }

  /** End for good: no timers, socket closed normally, final values published. */
  #finish(patch) {
    this.#finished = true;
    if (this.#timer !== null) {
      this.#clearTimer(this.#timer);
      this.#timer = null;
    }
    const socket = this.#socket;
    this.#socket = null;
    if (socket) {
      try {
        socket.close(CLOSE_NORMAL);
      } catch (error) {
        this.#logger.warn("caravela_flow: error while closing WebSocket", error);
      }
    }
    this.#update(patch);
  }

  #update(patch) {
    const previous = this.#snapshot;
    if (Object.keys(patch).every((key) => Object.is(previous[key], patch[key]))) return;
    const snapshot = Object.freeze({ ...previous, ...patch });
    this.#snapshot = snapshot;
    for (const entry of [...this.#listeners]) {
      if (this.#snapshot !== snapshot) break; // a listener caused a newer change, already delivered
      if (this.#listeners.has(entry)) this.#call(entry, snapshot);
    }
  }

  #call(entry, snapshot) {
    try {
      entry.fn(snapshot);
    } catch (error) {
      this.#logger.error("caravela_flow: subscriber failed", error);
    }
  }
}

/**
 * Open a subscription to a flow.
 *
 * @param {string} url WebSocket URL or path, e.g. "/ws/flows/<token>/".
 * @param {object} [options] onChange, WebSocketImpl, backoff {base, factor, max, jitter},
 *   random, setTimeout, clearTimeout, location, logger.
 * @returns {FlowConnection}
 */
export function connectFlow(url, options = {}) {
  return new FlowConnection(url, options);
}
