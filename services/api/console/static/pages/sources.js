// Operator: source services and the topics each may publish.
import { post } from "../api.js";
import { h } from "../dom.js";
import { field, FormProblem, onSubmit, pageHeader, table } from "../ui.js";
import { known, remember } from "./operator-memory.js";
import { showSecretOnce } from "./secret-once.js";

// The seeded catalog, offered as suggestions (the operator API has no catalog listing).
const SEEDED = ["SCG-Keyword", "SCG-Sender ID", "SCG-Voice-Call", "SCG-Contact", "SCG-Message",
  "SCG-Communication-Assistant", "NIS-Events", "MSS-Messages", "ABA-Messages"];

export async function render(container) {
  const name = h("input", { name: "name", required: true, maxlength: 200, placeholder: "sms-gateway" });
  const boxes = SEEDED.map((topic) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "topic", value: topic }), " ", topic));
  const other = h("input", { name: "other", placeholder: "other topics, comma-separated" });
  const topics = h("fieldset", { "data-path": "topics" }, h("legend", {}, "Topics it may publish"), boxes,
    field("Other catalog topics", other, { path: "topics.other" }));
  const form = h("form", { class: "card", "aria-labelledby": "new-source" }, h("h2", { id: "new-source" }, "New source service"),
    field("Name", name, { path: "name" }), topics,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create source")));
  const list = h("div");
  container.append(pageHeader("Sources"), h("p", { class: "muted" },
    "Source services (SMS, voice, number verification, media storage, batch automation) publish events to the ingest service with their token, only on the topics granted here."),
  form, h("h2", {}, "Created in this tab"), list);

  function refresh() {
    list.replaceChildren(table([
      { label: "Source", cell: (s) => h("strong", {}, s.name) },
      { label: "Id", cell: (s) => h("span", { class: "mono" }, s.id) },
      { label: "Topics", cell: (s) => s.topics.join(", ") },
    ], known("sources"), "No sources created in this tab."));
  }

  onSubmit(form, async (data) => {
    const chosen = [...data.getAll("topic").map(String), ...other.value.split(",").map((t) => t.trim()).filter(Boolean)];
    if (!chosen.length) throw new FormProblem(["topics"], "grant at least one topic");
    const source = await post("/v1/admin/sources", { name: name.value.trim(), topics: chosen });
    remember("sources", { id: source.id, name: source.name, topics: source.topics });
    form.reset();
    refresh();
    showSecretOnce(`Token of ${source.name}`, "Source token", source.token);
  });
  refresh();
}
