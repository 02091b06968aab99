// Event search: every filter of GET /v1/events, keyset pagination.
import { h } from "../dom.js";
import { pageHeader } from "../ui.js";
import { eventList } from "./event-list.js";

export async function render(container, { params }) {
  container.append(pageHeader("Event search"),
    h("p", { class: "muted" }, "Find events by id, topic, type, subject, delivery status, configuration or the time they arrived."));
  return eventList(container, {
    params,
    fields: ["id", "topic", "event_type", "subject", "status", "delivery_configuration_id", "from", "to"],
    title: "Event search",
  });
}
