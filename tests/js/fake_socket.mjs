// Test doubles for the caravela_flow JS client: a scriptable WebSocket,
// manual timers, a scripted random source and a recording logger.

/**
 * A fresh fake WebSocket class plus the list of sockets it created, so each
 * test has its own. The test plays the server with serverOpen/serverSend/
 * serverClose.
 */
export function fakeWebSocket() {
  const sockets = [];

  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url) {
      this.url = url;
      this.readyState = FakeWebSocket.CONNECTING;
      this.closeCalls = [];
      this.onopen = null;
      this.onmessage = null;
      this.onerror = null;
      this.onclose = null;
      sockets.push(this);
    }

    /** Client-initiated close, as the browser API. */
    close(code, reason = "") {
      this.closeCalls.push({ code, reason });
      if (this.readyState >= FakeWebSocket.CLOSING) return;
      this.readyState = FakeWebSocket.CLOSED;
      this.onclose?.({ code: code ?? 1005, reason, wasClean: true });
    }

    send() {
      throw new Error("the caravela_flow client must not send on the socket");
    }

    serverOpen() {
      this.readyState = FakeWebSocket.OPEN;
      this.onopen?.({});
    }

    /** Send a JSON frame (objects) or a raw text frame (strings). */
    serverSend(message) {
      if (this.readyState === FakeWebSocket.CONNECTING) this.serverOpen();
      const data = typeof message === "string" ? message : JSON.stringify(message);
      this.onmessage?.({ data });
    }

    /** Server or network close; 1006 also fires "error" first, as browsers do. */
    serverClose(code, reason = "") {
      if (code === 1006) this.onerror?.({});
      this.readyState = FakeWebSocket.CLOSED;
      this.onclose?.({ code, reason, wasClean: code !== 1006 });
    }
  }

  return { WebSocketImpl: FakeWebSocket, sockets };
}

/** Manual timers: nothing runs until the test calls tick() or runNext(). */
export function fakeClock() {
  let now = 0;
  let nextId = 1;
  const timers = new Map();

  return {
    setTimeout(fn, delay = 0) {
      const id = nextId++;
      timers.set(id, { fn, delay, at: now + delay });
      return id;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    /** Delays of the pending timers, in the order they were set. */
    pending() {
      return [...timers.values()].map((t) => t.delay);
    },
    /** Advance time by ms, running every timer that falls due, in order. */
    tick(ms) {
      const until = now + ms;
      for (;;) {
        const due = [...timers.entries()]
          .filter(([, t]) => t.at <= until)
          .sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = until;
    },
    /** Run the earliest pending timer; returns its delay. */
    runNext() {
      const [id, timer] = [...timers.entries()].sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0] ?? [];
      if (id === undefined) throw new Error("no pending timer");
      timers.delete(id);
      now = timer.at;
      timer.fn();
      return timer.delay;
    },
  };
}

/** A random() that returns the given values in turn, then repeats the last. */
export function scriptedRandom(...values) {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)];
}

/** A console stand-in that records warn/error calls instead of printing. */
export function recordingLogger() {
  const logger = { warns: [], errors: [] };
  logger.warn = (...args) => logger.warns.push(args);
  logger.error = (...args) => logger.errors.push(args);
  return logger;
}

/** Everything connectFlow needs, wired to fakes. */
export function harness(extra = {}) {
  const { WebSocketImpl, sockets } = fakeWebSocket();
  const clock = fakeClock();
  const logger = recordingLogger();
  const options = {
    WebSocketImpl,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: scriptedRandom(1),
    backoff: { jitter: "none" },
    location: { href: "http://testserver/books/" },
    logger,
    ...extra,
  };
  return { options, sockets, clock, logger, last: () => sockets[sockets.length - 1] };
}

export function snapshot(version, state, status = "running", flowId = "f1") {
  return { event: "snapshot", flow_id: flowId, version, status, state };
}

export function update(event, version, state, flowId = "f1") {
  return { event, flow_id: flowId, version, state };
}
