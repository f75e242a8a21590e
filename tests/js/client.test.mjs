import { test } from "node:test";
import assert from "node:assert/strict";

import {
  VERSION,
  CLOSE_NORMAL,
  CLOSE_REFUSED,
  CLOSE_GONE,
  DEFAULT_BACKOFF,
  FlowConnection,
  backoffDelay,
  connectFlow,
  resolveSocketUrl,
} from "../../caravela_flow/static/caravela_flow/client.js";
import { harness, scriptedRandom, snapshot, update } from "./fake_socket.mjs";

const URL_PATH = "/ws/flows/tok3n/";

test("exports a semver VERSION and the close codes", () => {
  assert.match(VERSION, /^\d+\.\d+\.\d+/);
  assert.equal(CLOSE_NORMAL, 1000);
  assert.equal(CLOSE_REFUSED, 4403);
  assert.equal(CLOSE_GONE, 4404);
  assert.deepEqual({ ...DEFAULT_BACKOFF }, { base: 500, factor: 2, max: 15000, jitter: "full" });
});

test("resolveSocketUrl maps http to ws and https to wss", () => {
  assert.equal(resolveSocketUrl(URL_PATH, { href: "http://example.com/books/1/" }), "ws://example.com/ws/flows/tok3n/");
  assert.equal(resolveSocketUrl(URL_PATH, { href: "https://example.com:8443/x" }), "wss://example.com:8443/ws/flows/tok3n/");
  assert.equal(resolveSocketUrl("wss://other.test/ws/flows/a/", { href: "http://example.com/" }), "wss://other.test/ws/flows/a/");
  assert.equal(resolveSocketUrl("https://other.test/ws/", undefined), "wss://other.test/ws/");
  assert.equal(resolveSocketUrl(URL_PATH, undefined), URL_PATH);
});

test("connectFlow opens one socket on the resolved URL and starts connecting", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  assert.ok(flow instanceof FlowConnection);
  assert.equal(h.sockets.length, 1);
  assert.equal(h.last().url, "ws://testserver/ws/flows/tok3n/");
  assert.equal(flow.url, "ws://testserver/ws/flows/tok3n/");
  assert.equal(flow.status, "connecting");
  assert.equal(flow.connection, "connecting");
  assert.equal(flow.state, null);
  assert.equal(flow.version, null);
  assert.equal(flow.flowId, null);
});

test("connectFlow without any WebSocket implementation throws a TypeError", () => {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = undefined;
  try {
    assert.throws(() => connectFlow(URL_PATH, { WebSocketImpl: undefined }), TypeError);
  } finally {
    globalThis.WebSocket = saved;
  }
});

test("invalid backoff options are rejected", () => {
  const h = harness();
  assert.throws(() => connectFlow(URL_PATH, { ...h.options, backoff: { jitter: "sometimes" } }), /jitter/);
  assert.throws(() => connectFlow(URL_PATH, { ...h.options, backoff: { base: -1 } }), /base/);
  assert.equal(h.sockets.length, 0);
});

test("getters are read-only", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  assert.throws(() => { flow.state = {}; }, TypeError);
  assert.throws(() => { flow.status = "done"; }, TypeError);
  assert.equal(flow.status, "connecting");
});

test("a snapshot then updates are applied in order", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  const seen = [];
  flow.subscribe((s) => seen.push(s));

  h.last().serverSend(snapshot(3, { dirty: false }));
  assert.equal(flow.connection, "open");
  assert.equal(flow.status, "running");
  assert.equal(flow.version, 3);
  assert.equal(flow.flowId, "f1");
  assert.deepEqual(flow.state, { dirty: false });

  h.last().serverSend(update("state", 4, { dirty: true }));
  h.last().serverSend(update("state", 5, { dirty: "processing" }));
  assert.deepEqual(flow.state, { dirty: "processing" });
  assert.equal(flow.version, 5);
  assert.deepEqual(
    seen.map((s) => [s.connection, s.status, s.version, s.state && s.state.dirty]),
    [
      ["connecting", "connecting", null, null],
      ["open", "running", 3, false],
      ["open", "running", 4, true],
      ["open", "running", 5, "processing"],
    ],
  );
  assert.ok(Object.isFrozen(seen[1]));
});

test("messages with a version already applied are dropped", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  h.last().serverSend(snapshot(5, { n: 5 }));
  let calls = 0;
  flow.subscribe(() => calls++);
  calls = 0;

  h.last().serverSend(update("state", 5, { n: "dup" }));
  h.last().serverSend(update("state", 2, { n: "old" }));
  h.last().serverSend(update("done", 4, { n: "old-done" }));
  assert.deepEqual(flow.state, { n: 5 });
  assert.equal(flow.version, 5);
  assert.equal(flow.status, "running");
  assert.equal(calls, 0);
  assert.deepEqual(h.last().closeCalls, []);

  h.last().serverSend(update("state", 6, { n: 6 }));
  assert.deepEqual(flow.state, { n: 6 });
  assert.equal(calls, 1);
});

test("unparsable frames, unknown events and versionless frames are ignored with a warning", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  h.last().serverSend(snapshot(1, { a: 1 }));
  const before = flow.state;

  h.last().serverSend("{not json");
  h.last().serverSend("42");
  h.last().serverSend("null");
  h.last().serverSend({ event: "mystery", flow_id: "f1", version: 9, state: { a: 9 } });
  h.last().serverSend({ event: "state", flow_id: "f1", state: { a: 10 } });
  h.last().serverSend({ event: "state", flow_id: "f1", version: "11", state: { a: 11 } });
  h.last().serverSend(update("state", 12, { a: 12 }, "another-flow"));

  assert.equal(flow.state, before);
  assert.equal(flow.version, 1);
  assert.equal(flow.connection, "open");
  assert.equal(h.logger.warns.length, 7);
  assert.match(h.logger.warns[0][0], /unparsable/);
  assert.match(h.logger.warns[3][0], /unknown event/);
  assert.match(h.logger.warns[6][0], /another flow/);
});

test("abnormal closes reconnect with exponentially growing, capped delays", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  const delays = [];
  for (let i = 0; i < 7; i++) {
    h.last().serverClose(1006);
    assert.equal(flow.connection, "reconnecting");
    assert.equal(h.clock.pending().length, 1);
    const count = h.sockets.length;
    delays.push(h.clock.runNext());
    assert.equal(h.sockets.length, count + 1, "the timer opens a new socket");
    assert.equal(flow.connection, "reconnecting", "stays reconnecting until a snapshot");
  }
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000]);
});

test("other abnormal codes (1001, 1011, 1005) reconnect too", () => {
  for (const code of [1001, 1011, 1005, 4000]) {
    const h = harness();
    const flow = connectFlow(URL_PATH, h.options);
    h.last().serverSend(snapshot(1, {}));
    h.last().serverClose(code);
    assert.equal(flow.connection, "reconnecting", `code ${code}`);
    assert.deepEqual(h.clock.pending(), [500]);
  }
});

test("reconnect waits respect the jitter bounds", () => {
  // full jitter: [0, d]
  const full = harness({ backoff: { base: 100, factor: 2, max: 1000, jitter: "full" }, random: scriptedRandom(0, 0.5, 0.999999) });
  connectFlow(URL_PATH, full.options);
  const fullDelays = [];
  for (let i = 0; i < 3; i++) {
    full.last().serverClose(1006);
    fullDelays.push(full.clock.runNext());
  }
  assert.equal(fullDelays[0], 0);
  assert.equal(fullDelays[1], 100);
  assert.ok(fullDelays[2] > 399 && fullDelays[2] <= 400);

  // equal jitter: [d/2, d]
  const equal = harness({ backoff: { base: 100, factor: 2, max: 1000, jitter: "equal" }, random: scriptedRandom(0, 1) });
  connectFlow(URL_PATH, equal.options);
  equal.last().serverClose(1006);
  assert.deepEqual(equal.clock.pending(), [50]);
  equal.clock.runNext();
  equal.last().serverClose(1006);
  assert.deepEqual(equal.clock.pending(), [200]);
});

test("backoffDelay stays within [0, cap] for full jitter and [cap/2, cap] for equal jitter", () => {
  const options = { base: 500, factor: 2, max: 15000 };
  for (let attempt = 1; attempt <= 12; attempt++) {
    const cap = Math.min(15000, 500 * 2 ** (attempt - 1));
    for (const r of [0, 0.25, 0.5, 0.9999]) {
      const f = backoffDelay(attempt, { ...options, jitter: "full" }, () => r);
      const e = backoffDelay(attempt, { ...options, jitter: "equal" }, () => r);
      assert.ok(f >= 0 && f <= cap, `full ${attempt} ${r} → ${f}`);
      assert.ok(e >= cap / 2 && e <= cap, `equal ${attempt} ${r} → ${e}`);
    }
    assert.equal(backoffDelay(attempt, { ...options, jitter: false }), cap);
  }
  assert.equal(backoffDelay(1, { base: 500, jitter: true }, () => 0.5), 250);
});

test("the backoff resets after a good snapshot", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  h.last().serverClose(1006);
  assert.equal(h.clock.runNext(), 500);
  h.last().serverClose(1006);
  assert.equal(h.clock.runNext(), 1000);
  h.last().serverClose(1006);
  assert.equal(h.clock.runNext(), 2000);

  h.last().serverSend(snapshot(1, { ok: true }));
  assert.equal(flow.connection, "open");
  h.last().serverClose(1006);
  assert.deepEqual(h.clock.pending(), [500]);
});

test("a socket that opens but closes before its snapshot keeps backing off", () => {
  const h = harness();
  connectFlow(URL_PATH, h.options);
  h.last().serverClose(1006);
  assert.equal(h.clock.runNext(), 500);
  h.last().serverOpen();
  h.last().serverClose(1011);
  assert.equal(h.clock.runNext(), 1000);
});

for (const [code, connection] of [[4403, "refused"], [4404, "gone"], [1000, "closed"]]) {
  test(`close code ${code} is final: connection "${connection}", no retry`, () => {
    const h = harness();
    const flow = connectFlow(URL_PATH, h.options);
    const seen = [];
    flow.subscribe((s) => seen.push(s.connection));
    h.last().serverClose(code);
    assert.equal(flow.connection, connection);
    assert.deepEqual(h.clock.pending(), []);
    h.clock.tick(60_000);
    assert.equal(h.sockets.length, 1);
    assert.deepEqual(seen, ["connecting", connection]);
    flow.close(); // no-op after the end
    assert.equal(flow.connection, connection);
  });
}

test("a refusal after earlier reconnects stops the retries", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  h.last().serverSend(snapshot(1, {}));
  h.last().serverClose(1006);
  h.clock.runNext();
  h.last().serverClose(4403);
  assert.equal(flow.connection, "refused");
  assert.equal(flow.status, "running", "the last known flow status is kept");
  assert.deepEqual(h.clock.pending(), []);
  assert.equal(h.sockets.length, 2);
});

test("a reconnect resyncs from the new snapshot", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  h.last().serverSend(snapshot(2, { step: "a" }));
  h.last().serverSend(update("state", 3, { step: "b" }));
  h.last().serverClose(1006);
  assert.equal(flow.connection, "reconnecting");
  assert.equal(flow.status, "running");
  assert.deepEqual(flow.state, { step: "b" }, "last state is kept while reconnecting");

  h.clock.runNext();
  const second = h.last();
  assert.notEqual(second, h.sockets[0]);
  second.serverSend(snapshot(7, { step: "e" }));
  assert.equal(flow.connection, "open");
  assert.equal(flow.version, 7);
  assert.deepEqual(flow.state, { step: "e" });

  second.serverSend(update("state", 7, { step: "dup" }));
  second.serverSend(update("state", 8, { step: "f" }));
  assert.deepEqual(flow.state, { step: "f" });

  // frames from the old socket are ignored
  h.sockets[0].onmessage?.({ data: JSON.stringify(update("state", 99, { step: "ghost" })) });
  assert.deepEqual(flow.state, { step: "f" });
});

test("a snapshot with the same version is accepted; a lower one only marks the connection open", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  h.last().serverSend(snapshot(4, { v: 4 }));
  h.last().serverClose(1006);
  h.clock.runNext();
  h.last().serverSend(snapshot(4, { v: "4 again" }));
  assert.deepEqual(flow.state, { v: "4 again" });

  h.last().serverClose(1006);
  h.clock.runNext();
  assert.equal(flow.connection, "reconnecting");
  h.last().serverSend(snapshot(3, { v: "stale" }));
  assert.equal(flow.connection, "open");
  assert.deepEqual(flow.state, { v: "4 again" });
  assert.equal(flow.version, 4);
  // the stale snapshot still counts as a good connection: backoff is reset
  h.last().serverClose(1006);
  assert.deepEqual(h.clock.pending(), [500]);
});

for (const [event, status] of [["done", "done"], ["stopped", "stopped"]]) {
  test(`"${event}" ends the flow: state applied, socket closed normally, no reconnect`, () => {
    const h = harness();
    const flow = connectFlow(URL_PATH, h.options);
    h.last().serverSend(snapshot(1, { n: 1 }));
    h.last().serverSend(update(event, 2, { n: 2 }));
    assert.equal(flow.status, status);
    assert.deepEqual(flow.state, { n: 2 });
    assert.equal(flow.version, 2);
    assert.equal(flow.connection, "closed");
    assert.deepEqual(h.last().closeCalls.map((c) => c.code), [1000]);
    assert.deepEqual(h.clock.pending(), []);
    h.clock.tick(60_000);
    assert.equal(h.sockets.length, 1);
  });
}

test('"error" ends the flow as failed with its reason and keeps the last state', () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  h.last().serverSend(snapshot(1, { n: 1 }));
  h.last().serverSend({ event: "error", flow_id: "f1", version: 2, reason: "ValueError: boom" });
  assert.equal(flow.status, "failed");
  assert.equal(flow.reason, "ValueError: boom");
  assert.deepEqual(flow.state, { n: 1 });
  assert.equal(flow.connection, "closed");
  assert.deepEqual(h.last().closeCalls.map((c) => c.code), [1000]);
  assert.deepEqual(h.clock.pending(), []);
});

test("a snapshot of a finished flow closes the socket and does not reconnect", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  h.last().serverSend(snapshot(9, { total: 3 }, "done"));
  assert.equal(flow.status, "done");
  assert.deepEqual(flow.state, { total: 3 });
  assert.equal(flow.connection, "closed");
  assert.deepEqual(h.last().closeCalls.map((c) => c.code), [1000]);
  h.clock.tick(60_000);
  assert.equal(h.sockets.length, 1);
});

test("close() closes the open socket normally and stops everything", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  h.last().serverSend(snapshot(1, { n: 1 }));
  flow.close();
  assert.equal(flow.connection, "closed");
  assert.deepEqual(h.last().closeCalls.map((c) => c.code), [1000]);
  h.last().onmessage?.({ data: JSON.stringify(update("state", 2, { n: 2 })) });
  assert.deepEqual(flow.state, { n: 1 });
  assert.deepEqual(h.clock.pending(), []);
});

test("close() during a reconnect wait cancels the pending reconnect", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  h.last().serverClose(1006);
  assert.equal(h.clock.pending().length, 1);
  flow.close();
  assert.equal(flow.connection, "closed");
  assert.deepEqual(h.clock.pending(), []);
  h.clock.tick(60_000);
  assert.equal(h.sockets.length, 1);
});

test("close() ignores a timer that fires anyway", () => {
  // a clearTimeout that does nothing: the callback must still not reconnect
  const h = harness();
  const flow = connectFlow(URL_PATH, { ...h.options, clearTimeout: () => {} });
  h.last().serverClose(1006);
  flow.close();
  h.clock.tick(60_000);
  assert.equal(h.sockets.length, 1);
  assert.equal(flow.connection, "closed");
});

test("subscribe calls at once, on every change, and stops after unsubscribe", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  const a = [];
  const b = [];
  const stopA = flow.subscribe((s) => a.push(s.version));
  flow.subscribe((s) => b.push(s.version));
  assert.deepEqual(a, [null]);

  h.last().serverSend(snapshot(1, {}));
  stopA();
  stopA(); // idempotent
  h.last().serverSend(update("state", 2, {}));
  assert.deepEqual(a, [null, 1]);
  assert.deepEqual(b, [null, 1, 2]);
  assert.throws(() => flow.subscribe("nope"), TypeError);
});

test("the same function subscribed twice is called twice and unsubscribed separately", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  const calls = [];
  const fn = (s) => calls.push(s.version);
  const stop1 = flow.subscribe(fn);
  flow.subscribe(fn);
  stop1();
  h.last().serverSend(snapshot(1, {}));
  assert.deepEqual(calls, [null, null, 1]);
});

test("a failing subscriber is logged and does not stop the others", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  flow.subscribe((s) => { if (s.version) throw new Error("bad listener"); });
  const seen = [];
  flow.subscribe((s) => seen.push(s.version));
  h.last().serverSend(snapshot(1, {}));
  assert.deepEqual(seen, [null, 1]);
  assert.equal(h.logger.errors.length, 1);
  assert.match(String(h.logger.errors[0][1]), /bad listener/);
});

test("a subscriber that closes the flow does not leave others with a stale value", () => {
  const h = harness();
  const flow = connectFlow(URL_PATH, h.options);
  flow.subscribe((s) => { if (s.version === 1) flow.close(); });
  const last = [];
  flow.subscribe((s) => last.push(s.connection));
  h.last().serverSend(snapshot(1, {}));
  assert.equal(last[last.length - 1], "closed");
  assert.equal(flow.connection, "closed");
});

test("onChange is subscribed before the socket opens", () => {
  const h = harness();
  const seen = [];
  connectFlow(URL_PATH, { ...h.options, onChange: (s) => seen.push([s.connection, s.version]) });
  h.last().serverSend(snapshot(1, {}));
  assert.deepEqual(seen, [["connecting", null], ["open", 1]]);
});

test("a WebSocket constructor that throws ends the connection as closed", () => {
  const h = harness();
  class Broken { constructor() { throw new SyntaxError("bad url"); } }
  const flow = connectFlow(URL_PATH, { ...h.options, WebSocketImpl: Broken });
  assert.equal(flow.connection, "closed");
  assert.equal(h.logger.errors.length, 1);
  assert.deepEqual(h.clock.pending(), []);
});
