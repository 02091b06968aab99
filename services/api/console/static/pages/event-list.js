// What the event viewer and the event search share: the filters, the paginated table with a
// gear per event (View, Tracking, Republish, Mark as handled), and bulk actions with progress.
import { get, post } from "../api.js";
import { fmtTime, h, isoToLocal, localToIso } from "../dom.js";
import {
  badge, confirmAction, field, gear, modal, onSubmit, Pager, select, table, toast, toastError,
} from "../ui.js";

export const STATUSES = ["queued", "pending_retry", "held", "delivered", "failed", "handled", "buffered"];

/**
 * Render an event list into `container`. `fields` names the filters shown (the rest keep their
 * values from `params`): id, topic, event_type, subject, status, delivery_configuration_id, from, to.
 */
export async function eventList(container, { params, fields, title }) {
  const [topics, configurations] = await Promise.all([get("/v1/topics"), get("/v1/delivery-configurations")]);
  const configurationNames = new Map(configurations.map((c) => [c.id, c.name]));
  const controls = {
    id: h("input", { name: "id", class: "mono", value: params.get("id") || "" }),
    topic: select([["", "any topic"], ...topics.map((t) => t.name)], { name: "topic", value: params.get("topic") || "" }),
    event_type: h("input", { name: "event_type", value: params.get("event_type") || "", list: "em-event-types" }),
    subject: h("input", { name: "subject", value: params.get("subject") || "", placeholder: "+14155550100" }),
    status: select([["", "any status"], ...STATUSES.map((st) => [st, st.replace("_", " ")])], { name: "status", value: params.get("status") || "" }),
    delivery_configuration_id: select([["", "any configuration"], ...configurations.map((c) => [c.id, c.name])],
      { name: "delivery_configuration_id", value: params.get("delivery_configuration_id") || "" }),
    from: h("input", { type: "datetime-local", name: "from", value: isoToLocal(params.get("from")) }),
    to: h("input", { type: "datetime-local", name: "to", value: isoToLocal(params.get("to")) }),
    limit: select(["5", "10", "25", "50", "100"], { name: "limit", value: params.get("limit") || "25" }),
  };
  const labels = { id: "Event id", topic: "Topic", event_type: "Event type", subject: "Subject", status: "Status",
    delivery_configuration_id: "Delivery configuration", from: "Received from", to: "Received until", limit: "Per page" };
  const eventTypes = h("datalist", { id: "em-event-types" },
    [...new Set(topics.flatMap((t) => t.event_types.map((e) => e.name)))].map((name) => h("option", { value: name })));
  const form = h("form", { class: "card", role: "search", "aria-label": `${title} filters` },
    h("div", { class: "filters" }, [...fields, "limit"].map((name) => field(labels[name], controls[name],
      { path: name === "from" || name === "to" ? name : name }))), eventTypes,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Search"),
      h("button", { type: "reset" }, "Clear")));
  const results = h("div", { class: "results", "aria-live": "polite" });
  const bulk = h("div", { class: "bulk" });
  const pager = new Pager(load);
  container.append(form, bulk, results, pager.element);

  function filter() {
    const values = {};
    for (const name of [...fields, ...Object.keys(labels).filter((n) => !fields.includes(n) && n !== "limit")]) {
      const raw = fields.includes(name) ? controls[name].value : params.get(name);
      if (!raw) continue;
      values[name] = name === "from" || name === "to" ? (fields.includes(name) ? localToIso(raw) : raw) : raw;
    }
    return values;
  }

  async function load(cursor) {
    const page = await get("/v1/events", { ...filter(), limit: controls.limit.value, cursor });
    results.replaceChildren(table([
      { label: "Received", cell: (e) => fmtTime(e.received_at) },
      { label: "Event id", cell: (e) => h("span", { class: "mono" }, e.id) },
      { label: "Topic", cell: (e) => e.topic },
      { label: "Event type", cell: (e) => e.event_type },
      { label: "Subject", cell: (e) => e.subject || "—" },
      { label: "Status", cell: (e) => badge(e.status) },
      { label: "Actions", cell: (e) => gear(`Actions for event ${e.id}`, [
        { label: "View", action: () => view(e.id, configurationNames) },
        { label: "Tracking", action: () => tracking(e.id) },
        { label: "Republish", action: () => republish(e.id, () => pager.reload()) },
        { label: "Mark as handled", action: () => markHandled(e.id, () => pager.reload()) },
      ]) },
    ], page.data, h("p", {}, Object.keys(filter()).length
      ? "No events match these filters. Widen the time range or clear a filter."
      : "No events yet. Events appear here as soon as a source service publishes one for your company; subscribe to topics to have them delivered."),
    { caption: `Events, newest first`, rowAttrs: (e) => ({ "data-id": e.id }) }));
    return page;
  }

  const bulkRepublish = h("button", { type: "button" }, "Republish all matching…");
  const bulkHandled = h("button", { type: "button" }, "Mark all matching as handled…");
  const progress = h("div", { class: "bulk-progress", "aria-live": "polite" });
  bulk.append(h("span", { class: "muted" }, "Bulk actions on everything these filters select:"), bulkRepublish, bulkHandled, progress);
  bulkRepublish.addEventListener("click", () => runBulk("republish"));
  bulkHandled.addEventListener("click", () => runBulk("handled"));

  let stopped = false;
  async function runBulk(action) {
    const selection = filter();
    const described = Object.entries(selection).map(([k, v]) => `${k} = ${v}`).join(", ") || "every event";
    const question = action === "republish"
      ? `Republish every delivery of the events matching (${described})?`
      : `Mark every delivery of the events matching (${described}) as handled? Pending retries stop.`;
    if (!(await confirmAction(question, action === "republish" ? "Republish all" : "Mark all handled", { danger: action !== "republish" }))) return;
    try {
      let job = await post("/v1/bulk-actions", { action, filter: selection });
      const bar = h("progress", { max: 1, value: 0, "aria-label": "Bulk action progress" });
      const text = h("span", { class: "bulk-status" });
      progress.replaceChildren(bar, " ", text);
      while (!stopped) {
        bar.max = Math.max(job.total, 1);
        bar.value = job.status === "completed" ? bar.max : job.processed;
        text.textContent = `${action === "republish" ? "Republish" : "Mark handled"}: ${job.processed} of ${job.total} deliveries, ${job.status}`;
        if (job.status !== "running") break;
        await new Promise((resolve) => { setTimeout(resolve, 500); });
        job = await get(`/v1/bulk-actions/${encodeURIComponent(job.id)}`);
      }
      if (!stopped) await pager.reload();
    } catch (error) {
      toastError(error);
    }
  }

  onSubmit(form, async () => {
    await pager.first();
  });
  form.addEventListener("reset", () => setTimeout(() => pager.first().catch(toastError), 0));
  await pager.first();
  return () => { stopped = true; };
}

async function view(eventId, configurationNames) {
  try {
    const event = await get(`/v1/events/${encodeURIComponent(eventId)}`);
    const rows = [["Event id", event.id], ["Topic", event.topic], ["Event type", event.event_type],
      ["Subject", event.subject || "—"], ["Occurred", fmtTime(event.occurred_at)], ["Received", fmtTime(event.received_at)]];
    modal(`Event ${event.id}`, h("div", {},
      h("dl", { class: "meta" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
        h("dt", {}, "Status"), h("dd", {}, badge(event.status))),
      h("h3", {}, "Payload"),
      h("pre", { class: "payload", tabindex: 0, "aria-label": "Event payload" }, JSON.stringify(event.data, null, 2)),
      h("h3", {}, "Deliveries"),
      table([
        { label: "Configuration", cell: (d) => configurationNames.get(d.delivery_configuration_id) || d.delivery_configuration_id },
        { label: "Status", cell: (d) => badge(d.status) },
        { label: "Attempts", cell: (d) => String(d.attempt_count), className: "num" },
        { label: "Last attempt", cell: (d) => fmtTime(d.last_attempt_at) || "—" },
        { label: "Next attempt", cell: (d) => fmtTime(d.next_attempt_at) || "—" },
        { label: "Last error", cell: (d) => d.last_error || "—" },
        { label: "Buffer file", cell: (d) => d.buffer_file_id || "—" },
      ], event.deliveries, "No subscription matched this event, so it was not delivered.")), { wide: true });
  } catch (error) {
    toastError(error);
  }
}

async function tracking(eventId) {
  try {
    const attempts = await get(`/v1/events/${encodeURIComponent(eventId)}/attempts`);
    modal(`Tracking: ${eventId}`, table([
      { label: "Time", cell: (a) => fmtTime(a.started_at) },
      { label: "Endpoint", cell: (a) => h("span", { class: "mono" }, a.endpoint_url) },
      { label: "HTTP status", cell: (a) => (a.http_status === null ? "—" : String(a.http_status)), className: "num" },
      { label: "Duration", cell: (a) => `${Math.round(a.duration_ms)} ms`, className: "num" },
      { label: "Outcome", cell: (a) => badge(a.outcome === "success" ? "delivered" : "failed") },
      { label: "Error", cell: (a) => a.error || "—" },
      { label: "Response excerpt", cell: (a) => (a.response_excerpt ? h("code", {}, a.response_excerpt) : "—") },
    ], attempts, "No delivery attempts yet: the event is queued, buffered for a scheduled file, or matched no subscription.",
    { caption: `${attempts.length} attempt${attempts.length === 1 ? "" : "s"}` }), { wide: true });
  } catch (error) {
    toastError(error);
  }
}

async function republish(eventId, after) {
  try {
    const result = await post(`/v1/events/${encodeURIComponent(eventId)}/republish`, {});
    toast(`Republished ${eventId}: ${result.deliveries} deliver${result.deliveries === 1 ? "y" : "ies"} queued again.`);
    await after();
  } catch (error) {
    toastError(error);
  }
}

async function markHandled(eventId, after) {
  if (!(await confirmAction(`Mark ${eventId} as handled? Its pending retries stop.`, "Mark as handled", { danger: false }))) return;
  try {
    const result = await post(`/v1/events/${encodeURIComponent(eventId)}/handled`, {});
    toast(`${eventId} is handled (${result.deliveries} deliver${result.deliveries === 1 ? "y" : "ies"}).`);
    await after();
  } catch (error) {
    toastError(error);
  }
}
