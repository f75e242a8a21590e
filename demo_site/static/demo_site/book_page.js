/**
 * The book page: saves the form as the user types, and drives the outage switch.
 *
 * Every change is sent at once (one request in flight, the latest form
 * state after it): debouncing is the sync flow's job, so a burst of
 * keystrokes still makes one sync. When a save lands on a new flow (the
 * old one ended), both indicators follow the new one.
 */

const form = document.querySelector("form[data-autosave-url]");
const status = document.querySelector(".autosave-status");
let inFlight = false;
let pending = false;
let subscriptionUrl = null;

function say(state, text) {
  status.dataset.autosave = state;
  status.textContent = text;
}

function showErrors(errors) {
  for (const field of form.querySelectorAll("[data-field]")) {
    const messages = (errors[field.dataset.field] || []).map((e) => e.message);
    field.classList.toggle("has-errors", messages.length > 0);
    field.querySelector(".field-errors").textContent = messages.join(" ");
  }
}

function follow(url) {
  if (subscriptionUrl === null) {
    subscriptionUrl = url;
    return;
  }
  if (url === subscriptionUrl) return;
  subscriptionUrl = url;
  window.dispatchEvent(new CustomEvent("flow-resubscribe", { detail: { url } }));
  for (const element of document.querySelectorAll("[data-caravela-flow-component]")) {
    element.caravelaFlow?.resubscribe(url);
  }
}

async function save() {
  if (inFlight) {
    pending = true;
    return;
  }
  inFlight = true;
  say("saving", "Saving…");
  try {
    const response = await fetch(form.dataset.autosaveUrl, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
    });
    const body = await response.json();
    if (response.ok) {
      showErrors({});
      say("saved", "Saved.");
      follow(body.subscription_url);
    } else if (body.errors) {
      showErrors(body.errors);
      say("invalid", "Not saved: fix the highlighted fields.");
    } else {
      say("error", body.error || `Not saved (${response.status}).`);
    }
  } catch (error) {
    say("error", `Not saved: ${error.message}`);
  } finally {
    inFlight = false;
    if (pending) {
      pending = false;
      save();
    }
  }
}

if (form && status) {
  follow(document.querySelector(".indicators")?.dataset.subscriptionUrl ?? null);
  form.addEventListener("input", () => save());
}

const outage = document.querySelector("form[data-outage]");
if (outage) {
  outage.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new FormData(outage);
    body.set("action", event.submitter?.value || "apply");
    const line = outage.querySelector(".outage-state");
    // getAttribute: the buttons named "action" shadow the form's .action property.
    const response = await fetch(outage.getAttribute("action"), {
      method: "POST",
      body,
      headers: { Accept: "application/json" },
    });
    const result = await response.json();
    if (!response.ok) {
      line.textContent = result.error || `Not changed (${response.status}).`;
      return;
    }
    outage.elements.failure_rate.value = result.failure_rate;
    outage.elements.latency_ms.value = Math.round(result.latency_ms);
    line.dataset.switched = String(result.switched);
    line.textContent = `${result.switched ? "Switched" : "From the settings"}: failure rate ${result.failure_rate}, latency ${Math.round(result.latency_ms)} ms.`;
  });
}
