/**
 * Alpine.js adapter for the caravela_flow client.
 *
 *   import Alpine from "alpinejs";
 *   import caravelaFlow from "/static/caravela_flow/alpine.js";
 *   Alpine.plugin(caravelaFlow);
 *
 *   <div x-data="caravelaFlow('{% flow_subscription_url handle %}')">
 *     <span x-text="status"></span> <span x-text="state?.dirty"></span>
 *   </div>
 */
import { connectFlow } from "./client.js";

/** Alpine plugin: registers the `caravelaFlow(url, options)` component. */
export default function caravelaFlow(Alpine) {
  Alpine.data("caravelaFlow", (url, options = {}) => {
    // Kept out of the component object: Alpine wraps that in a reactive
    // Proxy, which a class with private fields cannot live behind.
    let flow = null;
    let unsubscribe = null;
    return {
      state: null,
      status: "connecting",
      connection: "connecting",
      version: null,
      reason: null,
      flowId: null,

      init() {
        this.destroy();
        flow = connectFlow(url, options);
        unsubscribe = flow.subscribe((snapshot) => {
          this.state = snapshot.state;
          this.status = snapshot.status;
          this.connection = snapshot.connection;
          this.version = snapshot.version;
          this.reason = snapshot.reason;
          this.flowId = snapshot.flowId;
        });
      },

      destroy() {
        if (unsubscribe) unsubscribe();
        if (flow) flow.close();
        flow = null;
        unsubscribe = null;
      },
    };
  });
}

/** Alias of the default export: `register(Alpine)`. */
export const register = caravelaFlow;
