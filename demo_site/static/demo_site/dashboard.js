/**
 * The flows dashboard: polls the JSON listing and re-renders the table, so it
 * updates without a reload in local and worker mode alike.
 */

/** "42 s", "3 min", "2 h" (empty when unknown). */
export function age(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

/** Alpine plugin: the `flowDashboard(url, {interval})` component. */
export default function dashboard(Alpine) {
  Alpine.data("flowDashboard", (url, { interval = 1000 } = {}) => {
    let timer = null;
    return {
      flows: [],
      loaded: false,
      notice: "",
      stopping: {},
      age,

      init() {
        this.poll();
      },

      destroy() {
        clearTimeout(timer);
        timer = null;
      },

      async refresh() {
        const response = await fetch(url, { headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error(`${response.status}`);
        this.flows = (await response.json()).flows;
        this.loaded = true;
      },

      async poll() {
        try {
          await this.refresh();
        } catch (error) {
          this.notice = `Could not update the list (${error.message}); retrying.`;
        }
        timer = setTimeout(() => this.poll(), interval);
      },

      async stop(row) {
        this.stopping[row.id] = true;
        const token = this.$root.querySelector("[name=csrfmiddlewaretoken]").value;
        try {
          const response = await fetch(row.stop_url, {
            method: "POST",
            headers: { Accept: "application/json", "X-CSRFToken": token },
          });
          const body = await response.json();
          this.notice = body.message || body.error || `Not stopped (${response.status}).`;
          await this.refresh();
        } finally {
          delete this.stopping[row.id];
        }
      },
    };
  });
}
