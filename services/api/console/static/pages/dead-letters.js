// Operator: dead letters (what a worker set aside), and putting one back on its topic.
import { get, post } from "../api.js";
import { fmtTime, h } from "../dom.js";
import { confirmAction, field, onSubmit, Pager, pageHeader, table, toast, toastError } from "../ui.js";

export async function render(container) {
  const service = h("input", { name: "service", placeholder: "matcher, dispatcher, scheduler…" });
  const company = h("input", { name: "company_id", class: "mono" });
  const form = h("form", { class: "card", role: "search", "aria-label": "Dead letter filters" },
    h("div", { class: "filters" }, field("Service", service, { path: "service" }), field("Company id", company, { path: "company_id" })),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Show")));
  const results = h("div");
  const pager = new Pager(async (cursor) => {
    const page = await get("/v1/admin/dead-letters", { service: service.value, company_id: company.value, limit: 25, cursor });
    results.replaceChildren(table([
      { label: "Set aside", cell: (d) => fmtTime(d.created_at) },
      { label: "Service", cell: (d) => d.service },
      { label: "Source", cell: (d) => h("span", { class: "mono" }, d.source) },
      { label: "Company", cell: (d) => d.company_id || "—" },
      { label: "Reason", cell: (d) => d.reason },
      { label: "Payload", cell: (d) => h("details", {}, h("summary", {}, "show"),
        h("pre", {}, d.payload_text === null ? `(binary, base64) ${d.payload_base64}` : d.payload_text)) },
      { label: "Requeued", cell: (d) => (d.requeued_at ? fmtTime(d.requeued_at) : requeueButton(d, () => pager.reload())) },
    ], page.data, "No dead letters: every message and row was handled."));
    return page;
  });
  container.append(pageHeader("Dead letters"), h("p", { class: "muted" },
    "Messages or rows a worker could not handle, with the reason and the original bytes. After a fix, a Kafka message can be put back on its topic."),
  form, results, pager.element);
  onSubmit(form, () => pager.first());
  await pager.first();
}

function requeueButton(deadLetter, after) {
  const button = h("button", { type: "button" }, "Requeue");
  button.addEventListener("click", async () => {
    if (!(await confirmAction(`Put dead letter ${deadLetter.id} back on ${deadLetter.source}?`, "Requeue", { danger: false }))) return;
    try {
      await post(`/v1/admin/dead-letters/${encodeURIComponent(deadLetter.id)}/requeue`, {});
      toast("Requeued.");
      await after();
    } catch (error) {
      toastError(error);
    }
  });
  return button;
}
