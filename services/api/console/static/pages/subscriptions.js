// Subscriptions: the table and the New Subscription modal (topic info, event types, criteria).
import { del, get, patch, post } from "../api.js";
import { fmtTime, h, isoToLocal, localToIso } from "../dom.js";
import {
  badge, checkbox, confirmAction, field, FormProblem, gear, loading, modal, onSubmit, pageHeader, select, table,
  toast, toastError,
} from "../ui.js";

export async function render(container) {
  const body = h("div");
  const newButton = h("button", { type: "button", class: "primary", disabled: true }, "New Subscription");
  container.append(pageHeader("Subscriptions", newButton), body);
  let topics = [];
  let configurations = [];
  newButton.addEventListener("click", () => openForm(null, topics, configurations, refresh));

  async function refresh() {
    loading(body);
    let subscriptions;
    [subscriptions, topics, configurations] = await Promise.all([
      get("/v1/subscriptions"), get("/v1/topics"), get("/v1/delivery-configurations")]);
    const names = new Map(configurations.map((c) => [c.id, c.name]));
    body.replaceChildren(table([
      { label: "Topic", cell: (s) => h("strong", {}, s.topic) },
      { label: "Event types", cell: (s) => (s.event_types.length ? s.event_types.join(", ") : "all") },
      { label: "Delivery configuration", cell: (s) => names.get(s.delivery_configuration_id) || s.delivery_configuration_id },
      { label: "Matching criteria", cell: (s) => (s.matching_criteria ? h("code", {}, JSON.stringify(s.matching_criteria)) : "—") },
      { label: "From", cell: (s) => fmtTime(s.start_at) },
      { label: "Until", cell: (s) => (s.end_at ? fmtTime(s.end_at) : "no end") },
      { label: "Active", cell: (s) => badge(s.active ? "active" : "inactive") },
      { label: "Actions", cell: (s) => gear(`Actions for subscription to ${s.topic}`, [
        { label: "Edit", action: () => openForm(s, topics, configurations, refresh) },
        { label: s.active ? "Deactivate" : "Activate", action: () => setActive(s, !s.active, refresh) },
        { label: "Delete", danger: true, action: () => remove(s, refresh) },
      ]) },
    ], subscriptions, configurations.length
      ? h("p", {}, "No subscriptions yet. Use ", h("strong", {}, "New Subscription"), " to choose the topics and event types to receive.")
      : h("p", {}, "No subscriptions yet. First create a ", h("a", { href: "#/configurations" }, "delivery configuration"),
        " (where events go), then subscribe to topics here."),
    { caption: `${subscriptions.length} subscription${subscriptions.length === 1 ? "" : "s"}`,
      rowAttrs: (s) => ({ "data-id": s.id }) }));
    newButton.disabled = false; // the modal needs the catalog and the configurations
  }
  await refresh();
}

async function setActive(subscription, active, refresh) {
  try {
    await patch(`/v1/subscriptions/${encodeURIComponent(subscription.id)}`, { active });
    toast(`The subscription to ${subscription.topic} is ${active ? "active" : "inactive"}.`);
    await refresh();
  } catch (error) {
    toastError(error);
  }
}

async function remove(subscription, refresh) {
  if (!(await confirmAction(`Delete the subscription to ${subscription.topic}? Its events will no longer be delivered.`, "Delete"))) return;
  try {
    await del(`/v1/subscriptions/${encodeURIComponent(subscription.id)}`);
    toast("The subscription was deleted.");
    await refresh();
  } catch (error) {
    toastError(error);
  }
}

function topicInfo(topic) {
  if (!topic) return h("p", { class: "muted" }, "Choose a topic to see what it carries.");
  return h("div", {},
    h("p", {}, h("strong", {}, topic.name), ` · ${topic.service}`),
    topic.description ? h("p", {}, topic.description) : null,
    topic.requires_event_type ? h("p", {}, h("strong", {}, "Choose at least one event type: "), "this topic requires it.") : null,
    topic.broadcast ? h("p", { class: "muted" }, "Broadcast topic: its events reach companies by subject (for example, the monitored numbers).") : null,
    topic.event_types.length ? h("ul", {}, topic.event_types.map((t) => h("li", {}, h("code", {}, t.name),
      t.description ? ` — ${t.description}` : ""))) : null);
}

function openForm(existing, topics, configurations, refresh) {
  const editing = Boolean(existing);
  if (!configurations.length && !editing) {
    modal("New Subscription", h("div", {}, h("p", {}, "A subscription delivers through a delivery configuration, and there is none yet."),
      h("p", {}, h("a", { href: "#/configurations" }, "Create a delivery configuration"), " first.")));
    return;
  }
  const s = existing || { topic: "", event_types: [], delivery_configuration_id: configurations[0]?.id,
    matching_criteria: null, start_at: new Date().toISOString(), end_at: null, active: true };
  const byService = new Map();
  for (const topic of topics) {
    if (!byService.has(topic.service)) byService.set(topic.service, []);
    byService.get(topic.service).push(topic);
  }
  const topicSelect = h("select", { name: "topic", required: true, disabled: editing },
    h("option", { value: "" }, "Choose a topic…"),
    [...byService].map(([service, list]) => h("optgroup", { label: service },
      list.map((t) => h("option", { value: t.name, selected: t.name === s.topic }, t.name)))));
  const info = h("div", { class: "topic-info", "aria-live": "polite" });
  const typeBoxes = h("div", { class: "event-types" });
  const types = h("fieldset", { "data-path": "event_types" }, h("legend", {}, "Event types"), typeBoxes);
  const configuration = select(configurations.map((c) => [c.id, `${c.name} (${c.mode}${c.active ? "" : ", inactive"})`]),
    { name: "delivery_configuration_id", value: s.delivery_configuration_id });
  const criteria = h("textarea", { name: "matching_criteria", rows: 6, spellcheck: "false",
    placeholder: '{"data": {"keyword": ["STOP"]}}' });
  criteria.value = s.matching_criteria ? JSON.stringify(s.matching_criteria, null, 2) : "";
  const start = h("input", { type: "datetime-local", name: "start_at", value: isoToLocal(s.start_at), required: true });
  const end = h("input", { type: "datetime-local", name: "end_at", value: isoToLocal(s.end_at) });
  const active = checkbox("Active", { name: "active", checked: s.active });

  function showTopic() {
    const topic = topics.find((t) => t.name === topicSelect.value);
    info.replaceChildren(topicInfo(topic));
    const chosen = new Set(topic && topic.name === s.topic ? s.event_types : []);
    typeBoxes.replaceChildren(...(topic ? topic.event_types.map((t) => checkbox(t.name,
      { name: "event_types", value: t.name, checked: chosen.has(t.name) })) : []));
    types.querySelector(".hint")?.remove();
    types.append(h("p", { class: "hint" }, topic?.requires_event_type
      ? "Required for this topic: choose at least one."
      : "None chosen = every event type of the topic."));
  }
  topicSelect.addEventListener("change", showTopic);

  const form = h("form", { novalidate: true },
    field("Topic", topicSelect, { path: "topic" }), info, types,
    field("Delivery configuration", configuration, { path: "delivery_configuration_id" }),
    field("Matching criteria (optional, JSON event pattern)", criteria, { path: "matching_criteria",
      hint: "EventBridge-style: a field maps to a list of accepted values or operator objects (prefix, suffix, wildcard, numeric, exists, anything-but, equals-ignore-case, cidr, $or). Example: {\"data\": {\"keyword\": [\"STOP\"]}}" }),
    h("div", { class: "row" }, field("Start", start, { path: "start_at", hint: "May be in the future." }),
      field("End (optional)", end, { path: "end_at" })),
    h("div", { class: "field", "data-path": "active" }, active),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, editing ? "Save" : "Create subscription")));

  onSubmit(form, async (data) => {
    let matching = null;
    if (criteria.value.trim()) {
      try {
        matching = JSON.parse(criteria.value);
      } catch (error) {
        throw new FormProblem(["matching_criteria"], `not valid JSON: ${error.message}`);
      }
    }
    const values = {
      event_types: data.getAll("event_types").map(String),
      delivery_configuration_id: configuration.value,
      matching_criteria: matching,
      start_at: localToIso(start.value),
      end_at: localToIso(end.value),
      active: active.querySelector("input").checked,
    };
    if (!values.start_at) throw new FormProblem(["start_at"], "choose when delivery starts");
    if (editing) {
      await patch(`/v1/subscriptions/${encodeURIComponent(s.id)}`, values);
      toast("The subscription was saved.");
    } else {
      if (!topicSelect.value) throw new FormProblem(["topic"], "choose a topic");
      await post("/v1/subscriptions", { topic: topicSelect.value, ...values });
      toast(`Subscribed to ${topicSelect.value}.`);
    }
    close();
    await refresh();
  });
  const { close } = modal(editing ? `Edit subscription to ${s.topic}` : "New Subscription", form, { wide: true });
  showTopic();
}
