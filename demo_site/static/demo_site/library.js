/**
 * What the demo's live components display, computed from a caravelaFlow
 * component's `status`, `state`, `reason` and `connection`.
 *
 * Registered by base.html as the Alpine magics `$syncView(...)` and
 * `$importView(...)`; plain functions, so they can be tested without a browser.
 */

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function clockTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleTimeString();
}

/**
 * A book's sync indicator: `{phase, label, detail}` where phase is one of
 * connecting, gone, idle, pending, syncing, synced, failed, stopped.
 *
 * A last failed attempt reads "Sync failed" at once (not "attempt 5 of 4"),
 * and a flow that ended between syncs keeps showing the last sync.
 */
export function syncView(status, state, reason = null, connection = "open") {
  if (!state || !("dirty" in state)) {
    if (connection === "gone" || connection === "refused") {
      return { phase: "gone", label: "No live status", detail: "" };
    }
    return { phase: "connecting", label: "Connecting…", detail: "" };
  }
  const attempts = state.attempts || 0;
  const maxAttempts = state.max_attempts || attempts;
  const midSync = Boolean(state.dirty);
  // The last attempt failed: the flow is about to end with "retries exhausted".
  const outOfRetries = state.dirty === "processing" && state.last_error && attempts >= maxAttempts;
  if ((status === "failed" && midSync) || (status === "running" && outOfRetries)) {
    // The error event carries no state: the attempt count in `state` may be
    // one behind. Out of retries means every attempt was made.
    const made = reason === "retries exhausted" || outOfRetries ? maxAttempts : attempts;
    const detail = [reason || "retries exhausted", made ? `after ${plural(made, "attempt")}` : ""];
    if (state.last_error) detail.push(`last error: ${state.last_error}`);
    return { phase: "failed", label: "Sync failed", detail: detail.filter(Boolean).join(" · ") };
  }
  if (status === "stopped") {
    return { phase: "stopped", label: "Sync stopped", detail: "" };
  }
  if (status === "failed") {
    // The flow ended between syncs (say, its worker shut down): the book is as
    // synced as it was; the next edit starts a new flow.
    const last = settled(state);
    return { ...last, detail: [last.detail, `live status ended: ${reason}`].filter(Boolean).join(" · ") };
  }
  if (state.dirty === true) {
    return { phase: "pending", label: "Pending", detail: "waiting for edits to settle" };
  }
  if (state.dirty) {
    if (state.last_error) {
      return {
        phase: "syncing",
        label: `Retrying (attempt ${attempts + 1} of ${maxAttempts})`,
        detail: `last error: ${state.last_error}`,
      };
    }
    return { phase: "syncing", label: "Syncing…", detail: "" };
  }
  return settled(state);
}

/** A book with no sync under way: when it last synced, or "Idle". */
function settled(state) {
  if (state.synced_at) {
    const attempts = state.attempts || 0;
    const detail = [`version ${state.sync_version}`];
    if (attempts > 1) detail.push(`took ${plural(attempts, "attempt")}`);
    return { phase: "synced", label: `Synced at ${clockTime(state.synced_at)}`, detail: detail.join(" · ") };
  }
  return { phase: "idle", label: "Idle", detail: "" };
}

const IMPORT_LABELS = {
  fetching: (s) => `Fetching ${plural((s.sources || []).length, "feed")}…`,
  checking: () => "Checking the entries against the catalogue…",
  importing: (s) => `Importing… ${s.processed || 0} of ${s.total || 0}`,
  done: () => "Done",
};

/**
 * An import's progress: `{phase, label, total, processed, created, skipped,
 * createdPct, skippedPct, skips, finished}`.
 */
export function importView(status, state, reason = null) {
  const s = state || {};
  const total = s.total || 0;
  const created = s.created || 0;
  const skipped = s.skipped || 0;
  const pct = (n) => (total ? Math.round((1000 * n) / total) / 10 : 0);
  let phase = state ? s.phase || "fetching" : "connecting";
  let label = state ? (IMPORT_LABELS[phase] || (() => phase))(s) : "Connecting…";
  if (status === "done") {
    phase = "done";
    label = `Done: ${created} created, ${skipped} skipped`;
  } else if (status === "failed") {
    phase = "failed";
    label = `Import failed: ${reason || "unknown reason"}`;
  } else if (status === "stopped") {
    phase = "stopped";
    label = "Import stopped";
  }
  return {
    phase,
    label,
    total,
    processed: s.processed || 0,
    created,
    skipped,
    createdPct: pct(created),
    skippedPct: pct(skipped),
    skips: s.skips || [],
    finished: status === "done" || status === "failed" || status === "stopped",
  };
}

/** Alpine plugin: `$syncView(status, state, reason, connection)` and `$importView(...)`. */
export default function library(Alpine) {
  Alpine.magic("syncView", () => syncView);
  Alpine.magic("importView", () => importView);
}
