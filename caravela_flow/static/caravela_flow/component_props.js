/**
 * What a live Svelte component's props are, given its flow: the flow's state
 * keys, the tag's extra props, and `flow` = {status, reason, version, connection}.
 *
 * Plain functions (no Svelte), used by svelte_mount.svelte.js and tested in Node.
 */

/** Statuses for which the flow still changes, so the page subscribes. */
const LIVE = new Set(["running", "connecting"]);

/**
 * The mount point's data as rendered by `{% flow_component %}`:
 * `{url, snapshot: {flow_id, status, version, state, reason} | null, props}`.
 * `snapshot` is null when the flow could not be read at render time.
 */
export function readMountData(text) {
  const data = JSON.parse(text);
  if (!data || typeof data !== "object" || typeof data.url !== "string") {
    throw new TypeError("caravela_flow: a flow component's data has no subscription url");
  }
  return { url: data.url, snapshot: data.snapshot ?? null, props: data.props ?? {} };
}

/** Whether a page should open a socket for a flow whose embedded snapshot is `snapshot`. */
export function shouldSubscribe(snapshot) {
  return !snapshot || LIVE.has(snapshot.status);
}

/** The `flow` prop and state a component starts with: the embedded snapshot. */
export function initialView(snapshot) {
  if (!snapshot) {
    return { state: {}, flow: { status: "connecting", reason: null, version: null, connection: "connecting" } };
  }
  return {
    state: snapshot.state ?? {},
    flow: {
      status: snapshot.status,
      reason: snapshot.reason ?? null,
      version: snapshot.version ?? null,
      connection: shouldSubscribe(snapshot) ? "connecting" : "closed",
    },
  };
}

/**
 * The view after the flow client reports `value` ({state, status, connection,
 * version, reason}). Until the client has a snapshot of its own (version null)
 * only `connection` changes, so the embedded state stays on screen; a value
 * older than what is shown is ignored except for its connection.
 */
export function nextView(view, value) {
  const flow = { ...view.flow, connection: value.connection };
  const shown = view.flow.version;
  if (value.version === null || value.state === null || (shown !== null && value.version < shown)) {
    return { state: view.state, flow };
  }
  return {
    state: value.state,
    flow: { ...flow, status: value.status, reason: value.reason, version: value.version },
  };
}

/** The props object: state keys, then the tag's extra props, then `flow` (which wins). */
export function propsOf(view, extra = {}) {
  return { ...view.state, ...extra, flow: view.flow };
}

/**
 * Component registry from `{Name: Component}` or from Vite's
 * `import.meta.glob("./components/*.svelte", {eager: true})` (named by file).
 */
export function componentRegistry(components) {
  const registry = {};
  for (const [key, value] of Object.entries(components ?? {})) {
    const name = key.includes("/") || key.endsWith(".svelte")
      ? key.split("/").pop().replace(/\.svelte$/, "")
      : key;
    const component = value && typeof value === "object" && "default" in value ? value.default : value;
    if (typeof component !== "function") {
      throw new TypeError(`caravela_flow: ${key} is not a Svelte component`);
    }
    registry[name] = component;
  }
  return registry;
}
