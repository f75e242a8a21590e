import { test } from "node:test";
import assert from "node:assert/strict";

import caravelaFlow, { register } from "../../caravela_flow/static/caravela_flow/alpine.js";
import { harness, snapshot, update } from "./fake_socket.mjs";

/** Like Alpine's reactive(): nested objects are handed out behind proxies too. */
function reactive(target, cache = new WeakMap()) {
  if (target === null || typeof target !== "object" || !Object.isExtensible(target)) return target;
  if (!cache.has(target)) {
    cache.set(target, new Proxy(target, { get: (t, key, receiver) => reactive(Reflect.get(t, key, receiver), cache) }));
  }
  return cache.get(target);
}

/** Just enough of Alpine: plugin(), data() and a reactive component object. */
function fakeAlpine() {
  const registry = new Map();
  return {
    registry,
    plugin(fn) { fn(this); },
    data(name, factory) { registry.set(name, factory); },
    /** Build a component as `x-data="name(...args)"` would, then run init(). */
    mount(name, ...args) {
      const component = reactive(registry.get(name)(...args));
      component.init();
      return component;
    },
  };
}

test("the plugin registers the caravelaFlow component; register is an alias", () => {
  const Alpine = fakeAlpine();
  Alpine.plugin(caravelaFlow);
  assert.equal(typeof Alpine.registry.get("caravelaFlow"), "function");
  assert.equal(register, caravelaFlow);
  const other = fakeAlpine();
  register(other);
  assert.deepEqual([...other.registry.keys()], ["caravelaFlow"]);
});

test("the component starts with placeholder values and connects only in init()", () => {
  const Alpine = fakeAlpine();
  Alpine.plugin(caravelaFlow);
  const h = harness();
  const component = Alpine.registry.get("caravelaFlow")("/ws/flows/t/", h.options);
  assert.equal(component.state, null);
  assert.equal(component.status, "connecting");
  assert.equal(component.connection, "connecting");
  assert.equal(component.version, null);
  assert.equal(component.reason, null);
  assert.equal(h.sockets.length, 0);
  component.init();
  assert.equal(h.sockets.length, 1);
  assert.equal(h.last().url, "ws://testserver/ws/flows/t/");
});

test("every change is copied into the component's properties", () => {
  const Alpine = fakeAlpine();
  Alpine.plugin(caravelaFlow);
  const h = harness();
  const component = Alpine.mount("caravelaFlow", "/ws/flows/t/", h.options);

  h.last().serverSend(snapshot(1, { dirty: false }));
  assert.equal(component.status, "running");
  assert.equal(component.connection, "open");
  assert.equal(component.version, 1);
  assert.equal(component.flowId, "f1");
  assert.deepEqual(component.state, { dirty: false });

  h.last().serverSend(update("state", 2, { dirty: true }));
  assert.deepEqual(component.state, { dirty: true });

  h.last().serverClose(1006);
  assert.equal(component.connection, "reconnecting");

  h.clock.runNext();
  h.last().serverSend(snapshot(3, { dirty: false }));
  h.last().serverSend({ event: "error", flow_id: "f1", version: 4, reason: "retries exhausted" });
  assert.equal(component.status, "failed");
  assert.equal(component.reason, "retries exhausted");
  assert.equal(component.connection, "closed");
});

test("destroy() closes the socket normally and nothing reconnects", () => {
  const Alpine = fakeAlpine();
  Alpine.plugin(caravelaFlow);
  const h = harness();
  const component = Alpine.mount("caravelaFlow", "/ws/flows/t/", h.options);
  h.last().serverSend(snapshot(1, { n: 1 }));
  component.destroy();
  assert.deepEqual(h.last().closeCalls.map((c) => c.code), [1000]);
  h.clock.tick(60_000);
  assert.equal(h.sockets.length, 1);
  // no more updates reach a destroyed component
  h.last().onmessage?.({ data: JSON.stringify(update("state", 2, { n: 2 })) });
  assert.deepEqual(component.state, { n: 1 });
  component.destroy(); // twice is harmless
});

test("destroy() during a reconnect wait cancels the reconnect", () => {
  const Alpine = fakeAlpine();
  Alpine.plugin(caravelaFlow);
  const h = harness();
  const component = Alpine.mount("caravelaFlow", "/ws/flows/t/", h.options);
  h.last().serverClose(1006);
  assert.equal(h.clock.pending().length, 1);
  component.destroy();
  assert.deepEqual(h.clock.pending(), []);
});

test("two components on one page keep separate connections", () => {
  const Alpine = fakeAlpine();
  Alpine.plugin(caravelaFlow);
  const h = harness();
  const a = Alpine.mount("caravelaFlow", "/ws/flows/a/", h.options);
  const b = Alpine.mount("caravelaFlow", "/ws/flows/b/", h.options);
  h.sockets[0].serverSend(snapshot(1, { who: "a" }, "running", "fa"));
  h.sockets[1].serverSend(snapshot(5, { who: "b" }, "running", "fb"));
  assert.deepEqual([a.state.who, b.state.who], ["a", "b"]);
  a.destroy();
  assert.deepEqual(h.sockets[1].closeCalls, []);
  assert.equal(b.connection, "open");
});
