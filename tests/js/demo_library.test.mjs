import { test } from "node:test";
import assert from "node:assert/strict";

import library, { importView, syncView } from "../../demo_site/static/demo_site/library.js";

const idle = { dirty: false, book_id: 1, attempts: 0, max_attempts: 4, last_error: null, synced_at: null };

test("syncView: before the first snapshot", () => {
  assert.equal(syncView("connecting", null, null, "connecting").phase, "connecting");
  assert.equal(syncView("connecting", null, null, "gone").phase, "gone");
  assert.equal(syncView("connecting", null, null, "refused").label, "No live status");
});

test("syncView: the phases of one sync", () => {
  assert.deepEqual(syncView("running", idle), { phase: "idle", label: "Idle", detail: "" });
  assert.equal(syncView("running", { ...idle, dirty: true }).phase, "pending");
  assert.deepEqual(syncView("running", { ...idle, dirty: "processing" }), {
    phase: "syncing",
    label: "Syncing…",
    detail: "",
  });
  const synced = syncView("running", {
    ...idle,
    attempts: 1,
    synced_at: "2026-01-02T03:04:05.000Z",
    sync_version: 3,
  });
  assert.equal(synced.phase, "synced");
  assert.match(synced.label, /^Synced at /);
  assert.equal(synced.detail, "version 3");
});

test("syncView: retries and failure", () => {
  const retrying = syncView("running", { ...idle, dirty: "processing", attempts: 2, last_error: "503" });
  assert.deepEqual(retrying, {
    phase: "syncing",
    label: "Retrying (attempt 3 of 4)",
    detail: "last error: 503",
  });
  const synced = syncView("running", { ...idle, attempts: 2, synced_at: "2026-01-02T03:04:05Z", sync_version: 1 });
  assert.equal(synced.detail, "version 1 · took 2 attempts");
  // The state may lag one attempt behind the error event: out of retries means all were made.
  const failed = syncView("failed", { ...idle, dirty: "processing", attempts: 3, last_error: "504" }, "retries exhausted");
  assert.deepEqual(failed, {
    phase: "failed",
    label: "Sync failed",
    detail: "retries exhausted · after 4 attempts · last error: 504",
  });
  const gone = syncView("failed", { ...idle, dirty: "processing" }, "book 1 no longer exists");
  assert.equal(gone.detail, "book 1 no longer exists");
  assert.equal(syncView("stopped", { ...idle, dirty: true }).phase, "stopped");
});

test("syncView: the last failed attempt reads Sync failed, never attempt 5 of 4", () => {
  const last = syncView("running", { ...idle, dirty: "processing", attempts: 4, last_error: "503" });
  assert.deepEqual(last, {
    phase: "failed",
    label: "Sync failed",
    detail: "retries exhausted · after 4 attempts · last error: 503",
  });
  const ended = syncView("failed", { ...idle, dirty: "processing", attempts: 4, last_error: "503" }, "retries exhausted");
  assert.deepEqual(ended, last);
});

test("syncView: a flow that ends between syncs keeps showing the last sync", () => {
  const synced = { ...idle, synced_at: "2026-01-02T03:04:05Z", sync_version: 3, attempts: 1 };
  const view = syncView("failed", synced, "worker shutting down");
  assert.equal(view.phase, "synced");
  assert.match(view.label, /^Synced at /);
  assert.equal(view.detail, "version 3 · live status ended: worker shutting down");
  assert.equal(syncView("failed", idle, "worker shutting down").phase, "idle");
});

test("importView: progress and the end", () => {
  assert.equal(importView("connecting", null).label, "Connecting…");
  const fetching = importView("running", { phase: "fetching", sources: ["a", "b", "c"], total: 0 });
  assert.equal(fetching.label, "Fetching 3 feeds…");
  assert.equal(fetching.createdPct, 0);
  const running = importView("running", {
    phase: "importing",
    total: 8,
    processed: 3,
    created: 2,
    skipped: 1,
    skips: [{ n: 1, reason: "no title" }],
  });
  assert.equal(running.label, "Importing… 3 of 8");
  assert.equal(running.createdPct, 25);
  assert.equal(running.skippedPct, 12.5);
  assert.equal(running.skips.length, 1);
  assert.equal(running.finished, false);
  const done = importView("done", { phase: "done", total: 8, created: 6, skipped: 2 });
  assert.equal(done.label, "Done: 6 created, 2 skipped");
  assert.equal(done.finished, true);
  assert.equal(importView("failed", { phase: "fetching" }, "FakeApiError: 503").label, "Import failed: FakeApiError: 503");
  assert.equal(importView("stopped", { phase: "importing" }).phase, "stopped");
});

test("the plugin registers both magics", () => {
  const magics = {};
  library({ magic: (name, fn) => (magics[name] = fn()) });
  assert.equal(magics.syncView, syncView);
  assert.equal(magics.importView, importView);
});
