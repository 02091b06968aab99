// Event viewer: every event of the company with its status, newest first.
import { h } from "../dom.js";
import { pageHeader } from "../ui.js";
import { eventList } from "./event-list.js";

export async function render(container, { params }) {
  container.append(pageHeader("Event viewer"),
    h("p", { class: "muted" }, "Every event that occurred for your company and where its deliveries stand. The gear shows the payload, the delivery attempts, and lets you republish or mark an event as handled."));
  return eventList(container, { params, fields: ["status", "topic"], title: "Event viewer" });
}
