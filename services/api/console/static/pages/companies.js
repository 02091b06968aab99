// Operator: companies, and a new application (with its API key) for one.
import { get, post } from "../api.js";
import { fmtTime, h } from "../dom.js";
import { checkbox, field, gear, modal, onSubmit, pageHeader, table, toast } from "../ui.js";
import { remember } from "./operator-memory.js";
import { showSecretOnce } from "./secret-once.js";

export async function render(container) {
  const name = h("input", { name: "name", required: true, maxlength: 200 });
  const form = h("form", { class: "card", "aria-labelledby": "new-company" }, h("h2", { id: "new-company" }, "New company"),
    h("div", { class: "row bottom" }, field("Name", name, { path: "name" }),
      h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Create company"))));
  const list = h("div");
  container.append(pageHeader("Companies"), form, list);

  async function refresh() {
    const companies = await get("/v1/admin/companies");
    list.replaceChildren(table([
      { label: "Name", cell: (c) => h("strong", {}, c.name) },
      { label: "Company id", cell: (c) => h("span", { class: "mono" }, c.id) },
      { label: "Created", cell: (c) => fmtTime(c.created_at) },
      { label: "Actions", cell: (c) => gear(`Actions for ${c.name}`, [
        { label: "New application", action: () => newApplication(c) },
      ]) },
    ], companies, "No companies yet. Create one above, then give it an application: its API key signs in to the company console.",
    { caption: `${companies.length} compan${companies.length === 1 ? "y" : "ies"}`, rowAttrs: (c) => ({ "data-id": c.id, "data-name": c.name }) }));
  }

  onSubmit(form, async () => {
    const company = await post("/v1/admin/companies", { name: name.value.trim() });
    toast(`${company.name} was created.`);
    name.value = "";
    await refresh();
  });
  await refresh();
}

function newApplication(company) {
  const name = h("input", { name: "name", required: true, maxlength: 200, value: "crm" });
  const enabled = checkbox("Event Manager enabled", { name: "event_manager_enabled", checked: true });
  const form = h("form", {}, field("Application name", name, { path: "name" }),
    h("div", { class: "field", "data-path": "event_manager_enabled" }, enabled),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create application")));
  onSubmit(form, async () => {
    const application = await post(`/v1/admin/companies/${encodeURIComponent(company.id)}/applications`,
      { name: name.value.trim(), event_manager_enabled: enabled.querySelector("input").checked });
    remember("applications", { id: application.id, name: application.name, company_id: company.id,
      company_name: company.name, event_manager_enabled: application.event_manager_enabled });
    close();
    showSecretOnce(`API key of ${application.name}`, "API key", application.api_key);
  });
  const { close } = modal(`New application for ${company.name}`, form);
}
