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
 */
export function syncView(status, state, reason = null, connection = "open") {
  if (!state) {
    if (connection === "gone" || connection === "refused") {
      return { phase: "gone", label: "No live status", detail: "" };
    }
    return { phase: "connecting", label: "Connecting…", detail: "" };
  }
  const attempts = state.attempts || 0;
  const maxAttempts = state.max_attempts || attempts;
  if (status === "failed") {
    // The error event carries no state: the attempt count in `state` may be
    // one behind. Out of retries means every attempt was made.
    const made = reason === "retries exhausted" ? maxAttempts : attempts;
    const detail = [reason, made ? `after ${plural(made, "attempt")}` : ""];
    if (state.last_error) detail.push(`last error: ${state.last_error}`);
    return { phase: "failed", label: "Sync failed", detail: detail.filter(Boolean).join(" · ") };
  }
  if (status === "stopped") {
    return { phase: "stopped", label: "Sync stopped", detail: "" };
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
  if (state.synced_at) {
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
