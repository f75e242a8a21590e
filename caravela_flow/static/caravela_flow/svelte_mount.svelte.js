/**
 * Mounts the Svelte 5 components that `{% flow_component "Name" handle %}`
 * renders, and keeps their props current from the flow client.
 *
 * Bundle it with your components (Vite and @sveltejs/vite-plugin-svelte
 * compile this file's runes):
 *
 *   import { mountFlowComponents } from "caravela_flow/svelte_mount.svelte.js";
 *   mountFlowComponents(import.meta.glob("./components/*.svelte", { eager: true }));
 *
 * Each component gets the flow's state keys as props, the tag's extra
 * props, and `flow` = {status, reason, version, connection}. The first paint
 * shows the snapshot embedded in the page; the socket takes over from there.
 * Reference: docs/client.md.
 */
import { mount, unmount } from "svelte";

import { connectFlow } from "./client.js";
import {
  componentRegistry,
  initialView,
  nextView,
  propsOf,
  readMountData,
  shouldSubscribe,
} from "./component_props.js";

/** The mount points `{% flow_component %}` renders. */
export const SELECTOR = "[data-caravela-flow-component]";

/** Copy `next` into the reactive `props` key by key, dropping keys that went away. */
function assign(props, next) {
  for (const key of Object.keys(props)) if (!(key in next)) delete props[key];
  for (const [key, value] of Object.entries(next)) {
    if (!Object.is(props[key], value)) props[key] = value;
  }
}

/**
 * Mount `Component` on `element` (a `{% flow_component %}` mount point).
 * Returns `{element, component, props, resubscribe(url), destroy()}`, also
 * kept as `element.caravelaFlow`. `options` go to `connectFlow`.
 */
export function mountFlowComponent(element, Component, options = {}) {
  const source = element.querySelector(':scope > script[type="application/json"]');
  if (!source) throw new TypeError("caravela_flow: a flow component mount point has no data");
  const data = readMountData(source.textContent);
  let view = initialView(data.snapshot);
  const props = $state(propsOf(view, data.props));
  for (const child of [...element.childNodes]) if (child !== source) child.remove();
  const component = mount(Component, { target: element, props });
  let connection = null;
  let unsubscribe = null;

  function follow(url) {
    connection = connectFlow(url, options);
    unsubscribe = connection.subscribe((value) => {
      view = nextView(view, value);
      assign(props, propsOf(view, data.props));
    });
  }

  function close() {
    if (unsubscribe) unsubscribe();
    if (connection) connection.close();
    connection = null;
    unsubscribe = null;
  }

  if (shouldSubscribe(data.snapshot)) follow(data.url);

  const handle = {
    element,
    component,
    props,
    get connection() { return connection; },
    /** Follow another flow (say, the one that replaced an ended flow) from its snapshot. */
    resubscribe(url) {
      close();
      // Keep what is on screen until the new flow's snapshot replaces it.
      view = { state: view.state, flow: { ...view.flow, version: null, connection: "connecting" } };
      follow(url);
    },
    destroy() {
      close();
      unmount(component);
      delete element.caravelaFlow;
    },
  };
  element.caravelaFlow = handle;
  return handle;
}

/**
 * Mount every not yet mounted `{% flow_component %}` under `root` (default:
 * `document`) whose name is in `components` ({Name: Component}, or Vite's
 * eager `import.meta.glob` result). Returns the new mounts.
 */
export function mountFlowComponents(components, { root = document, ...options } = {}) {
  const registry = componentRegistry(components);
  const mounted = [];
  for (const element of root.querySelectorAll(SELECTOR)) {
    if (element.caravelaFlow) continue;
    const name = element.dataset.caravelaFlowComponent;
    const Component = registry[name];
    if (!Component) {
      const known = Object.keys(registry).join(", ") || "none";
      console.error(`caravela_flow: no Svelte component named ${name} (known: ${known})`);
      continue;
    }
    mounted.push(mountFlowComponent(element, Component, options));
  }
  return mounted;
}
