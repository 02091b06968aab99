// Topic info: the catalog of topics and their event types.
import { get } from "../api.js";
import { h } from "../dom.js";
import { pageHeader, table } from "../ui.js";

export async function render(container) {
  const topics = await get("/v1/topics");
  container.append(pageHeader("Topic info"),
    h("p", { class: "muted" }, "The topics you can subscribe to, the service that publishes each, and their event types."),
    table([
      { label: "Topic", cell: (t) => h("strong", {}, t.name) },
      { label: "Service", cell: (t) => t.service },
      { label: "Description", cell: (t) => h("div", {}, t.description,
        t.requires_event_type ? h("div", { class: "muted" }, "Subscriptions must name at least one event type.") : null,
        t.broadcast ? h("div", { class: "muted" }, "Broadcast: reaches companies by subject (monitored numbers).") : null) },
      { label: "Event types", cell: (t) => h("ul", {}, t.event_types.map((e) => h("li", {}, h("code", {}, e.name),
        e.description ? ` — ${e.description}` : ""))) },
    ], topics, "The catalog is empty."));
}
