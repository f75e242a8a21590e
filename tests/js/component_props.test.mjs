import { test } from "node:test";
import assert from "node:assert/strict";

import {
  componentRegistry,
  initialView,
  nextView,
  propsOf,
  readMountData,
  shouldSubscribe,
} from "../../caravela_flow/static/caravela_flow/component_props.js";

const SNAPSHOT = { flow_id: "f", status: "running", version: 3, state: { dirty: false, n: 1 }, reason: null };
const value = (patch) => ({ state: null, status: "connecting", connection: "connecting", version: null, reason: null, flowId: null, ...patch });

test("the first props are the embedded snapshot: state keys, extra props, flow", () => {
  const view = initialView(SNAPSHOT);
  assert.deepEqual(propsOf(view, { label: "Svelte" }), {
    dirty: false,
    n: 1,
    label: "Svelte",
    flow: { status: "running", reason: null, version: 3, connection: "connecting" },
  });
});

test("until the client has its own snapshot only the connection changes", () => {
  let view = initialView(SNAPSHOT);
  view = nextView(view, value({ connection: "reconnecting" }));
  assert.deepEqual(view.state, SNAPSHOT.state);
  assert.deepEqual(view.flow, { status: "running", reason: null, version: 3, connection: "reconnecting" });
});

test("newer values replace state, status, version and reason; older ones only the connection", () => {
  let view = initialView(SNAPSHOT);
  view = nextView(view, value({ state: { dirty: true }, status: "running", connection: "open", version: 4 }));
  assert.deepEqual(propsOf(view), { dirty: true, flow: { status: "running", reason: null, version: 4, connection: "open" } });
  view = nextView(view, value({ state: { dirty: "old" }, status: "running", connection: "reconnecting", version: 2 }));
  assert.deepEqual(view.state, { dirty: true });
  assert.equal(view.flow.connection, "reconnecting");
  view = nextView(view, value({ state: { dirty: true }, status: "failed", reason: "boom", connection: "closed", version: 5 }));
  assert.deepEqual(view.flow, { status: "failed", reason: "boom", version: 5, connection: "closed" });
});

test("flow wins over a state key of the same name", () => {
  const view = initialView({ ...SNAPSHOT, state: { flow: "mine" } });
  assert.equal(typeof propsOf(view, { flow: "extra" }).flow, "object");
});

test("finished flows are not subscribed; a missing snapshot is", () => {
  assert.equal(shouldSubscribe(SNAPSHOT), true);
  assert.equal(shouldSubscribe(null), true);
  for (const status of ["done", "failed", "stopped"]) {
    assert.equal(shouldSubscribe({ ...SNAPSHOT, status }), false);
    assert.equal(initialView({ ...SNAPSHOT, status }).flow.connection, "closed");
  }
  assert.deepEqual(initialView(null), {
    state: {},
    flow: { status: "connecting", reason: null, version: null, connection: "connecting" },
  });
});

test("mount data needs a url", () => {
  assert.deepEqual(readMountData('{"url": "/ws/flows/t/", "snapshot": null}'), { url: "/ws/flows/t/", snapshot: null, props: {} });
  assert.throws(() => readMountData("{}"), /no subscription url/);
});

test("components come from a name map or from import.meta.glob modules", () => {
  function A() {}
  function B() {}
  assert.deepEqual(componentRegistry({ A }), { A });
  assert.deepEqual(componentRegistry({ "./components/B.svelte": { default: B } }), { B });
  assert.throws(() => componentRegistry({ C: 3 }), /C is not a Svelte component/);
});
