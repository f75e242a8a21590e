import { test } from "node:test";
import assert from "node:assert/strict";

import flowStoreDefault, { flowStore } from "../../caravela_flow/static/caravela_flow/svelte.js";
import { harness, snapshot, update } from "./fake_socket.mjs";

test("no socket is opened until the first subscriber", () => {
  const h = harness();
  const store = flowStore("/ws/flows/t/", h.options);
  assert.equal(typeof store.subscribe, "function");
  assert.equal(h.sockets.length, 0);
  assert.equal(flowStoreDefault, flowStore);
});

test("subscribe calls run synchronously, once, with the current value", () => {
  const h = harness();
  const store = flowStore("/ws/flows/t/", h.options);
  const first = [];
  const stop = store.subscribe((v) => first.push(v));
  assert.equal(first.length, 1);
  assert.equal(first[0].connection, "connecting");
  assert.equal(h.sockets.length, 1);

  h.last().serverSend(snapshot(2, { n: 2 }));
  const second = [];
  store.subscribe((v) => second.push(v));
  assert.equal(second.length, 1);
  assert.equal(second[0].version, 2);
  assert.deepEqual(second[0].state, { n: 2 });
  assert.equal(h.sockets.length, 1, "subscribers share one socket");
  stop();
});

test("updates reach every subscriber", () => {
  const h = harness();
  const store = flowStore("/ws/flows/t/", h.options);
  const a = [];
  const b = [];
  store.subscribe((v) => a.push(v.version));
  store.subscribe((v) => b.push(v.version));
  h.last().serverSend(snapshot(1, {}));
  h.last().serverSend(update("state", 2, {}));
  assert.deepEqual(a, [null, 1, 2]);
  assert.deepEqual(b, [null, 1, 2]);
});

test("the socket closes when the last subscriber leaves, not before", () => {
  const h = harness();
  const store = flowStore("/ws/flows/t/", h.options);
  const a = [];
  const stopA = store.subscribe((v) => a.push(v.version));
  const stopB = store.subscribe(() => {});
  h.last().serverSend(snapshot(1, {}));

  stopA();
  assert.deepEqual(h.last().closeCalls, []);
  h.last().serverSend(update("state", 2, {}));
  assert.deepEqual(a, [null, 1], "an unsubscribed run is not called");

  stopB();
  assert.deepEqual(h.last().closeCalls.map((c) => c.code), [1000]);
  stopB(); // idempotent
  stopA();
  assert.equal(h.last().closeCalls.length, 1);
  h.clock.tick(60_000);
  assert.equal(h.sockets.length, 1, "no reconnect after the last unsubscribe");
});

test("unsubscribing during a reconnect wait cancels it", () => {
  const h = harness();
  const store = flowStore("/ws/flows/t/", h.options);
  const stop = store.subscribe(() => {});
  h.last().serverClose(1006);
  assert.equal(h.clock.pending().length, 1);
  stop();
  assert.deepEqual(h.clock.pending(), []);
});

test("a new subscriber after the last one left opens a fresh connection", () => {
  const h = harness();
  const store = flowStore("/ws/flows/t/", h.options);
  store.subscribe(() => {})();
  assert.equal(h.sockets.length, 1);
  const seen = [];
  store.subscribe((v) => seen.push(v.connection));
  assert.equal(h.sockets.length, 2);
  assert.deepEqual(seen, ["connecting"]);
  h.last().serverSend(snapshot(1, {}));
  assert.deepEqual(seen, ["connecting", "open"]);
});

test("a failed connect does not leave a subscriber behind", () => {
  const h = harness();
  let failures = 1;
  const options = {
    ...h.options,
    get backoff() { return failures-- > 0 ? { jitter: "bogus" } : { jitter: "none" }; },
  };
  const store = flowStore("/ws/flows/t/", options);
  const orphan = [];
  assert.throws(() => store.subscribe((v) => orphan.push(v)), TypeError);
  assert.throws(() => store.subscribe("nope"), TypeError);
  assert.equal(h.sockets.length, 0);

  const seen = [];
  store.subscribe((v) => seen.push(v.version));
  h.last().serverSend(snapshot(1, {}));
  assert.deepEqual(seen, [null, 1]);
  assert.deepEqual(orphan, [], "the failed subscriber is never called");
});
