/**
 * Svelte adapter for the caravela_flow client: a readable store.
 *
 *   import { flowStore } from "/static/caravela_flow/svelte.js";
 *   const flow = flowStore(url);
 *   // {$flow.status} {$flow.state?.dirty}
 *
 * The socket opens with the first subscriber and closes (normally, without
 * reconnecting) when the last one unsubscribes; a later subscriber opens a
 * fresh connection that resyncs from the server's snapshot.
 */
import { connectFlow } from "./client.js";

/**
 * A Svelte-compatible readable store of `{state, status, connection, version,
 * reason, flowId}` for the flow at `url`. `options` go to `connectFlow`.
 */
export function flowStore(url, options = {}) {
  const subscribers = new Set();
  let flow = null;
  let stop = null;
  let value;

  function subscribe(run) {
    if (typeof run !== "function") throw new TypeError("caravela_flow: subscribe() needs a function");
    const entry = { run };
    subscribers.add(entry);
    if (flow === null) {
      try {
        flow = connectFlow(url, options);
      } catch (error) {
        subscribers.delete(entry);
        throw error;
      }
      // Calls back at once, which gives this first subscriber its value.
      stop = flow.subscribe((next) => {
        value = next;
        for (const each of [...subscribers]) if (subscribers.has(each)) each.run(next);
      });
    } else {
      run(value);
    }
    return function unsubscribe() {
      if (!subscribers.delete(entry) || subscribers.size > 0 || flow === null) return;
      stop();
      flow.close();
      flow = null;
      stop = null;
    };
  }

  return { subscribe };
}

export default flowStore;
