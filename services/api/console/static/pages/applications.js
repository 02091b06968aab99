// Operator: applications: enable or disable Event Manager, rotate the API key.
import { patch, post } from "../api.js";
import { h } from "../dom.js";
import { badge, confirmAction, field, onSubmit, pageHeader, table, toast, toastError } from "../ui.js";
import { known, remember } from "./operator-memory.js";
import { showSecretOnce } from "./secret-once.js";

export async function render(container) {
  const id = h("input", { name: "application_id", class: "mono", required: true, placeholder: "app_…" });
  const form = h("form", { class: "card", "aria-labelledby": "by-id" }, h("h2", { id: "by-id" }, "An application by id"),
    h("div", { class: "row bottom" }, field("Application id", id, { path: "application_id" }),
      h("div", { class: "field" }, h("div", { class: "actions" },
        h("button", { type: "submit", value: "enable" }, "Enable"),
        h("button", { type: "submit", value: "disable" }, "Disable"),
        h("button", { type: "submit", value: "rotate" }, "Rotate key")))));
  const list = h("div");
  container.append(pageHeader("Applications"), h("p", { class: "muted" },
    "An application's API key signs a company in to the API and this console. Applications created from the Companies page in this tab are listed below."),
  form, list);
  let action = "enable";
  for (const button of form.querySelectorAll("button")) button.addEventListener("click", () => { action = button.value; });

  async function act(application, what) {
    if (what === "rotate") {
      if (!(await confirmAction(`Rotate the API key of ${application.name || application.id}? The current key stops working at once.`, "Rotate key"))) return;
      const answer = await post(`/v1/admin/applications/${encodeURIComponent(application.id)}/rotate-key`, {});
      showSecretOnce(`New API key of ${application.name || application.id}`, "API key", answer.api_key);
      return;
    }
    const updated = await patch(`/v1/admin/applications/${encodeURIComponent(application.id)}`,
      { event_manager_enabled: what === "enable" });
    const before = known("applications").find((a) => a.id === updated.id) || {};
    remember("applications", { ...before, id: updated.id, name: updated.name, company_id: updated.company_id,
      event_manager_enabled: updated.event_manager_enabled });
    toast(`${updated.name}: Event Manager ${updated.event_manager_enabled ? "enabled" : "disabled"}.`);
    refresh();
  }

  function refresh() {
    list.replaceChildren(table([
      { label: "Application", cell: (a) => h("strong", {}, a.name || "") },
      { label: "Id", cell: (a) => h("span", { class: "mono" }, a.id) },
      { label: "Company", cell: (a) => a.company_name || a.company_id || "" },
      { label: "Event Manager", cell: (a) => badge(a.event_manager_enabled ? "active" : "inactive") },
      { label: "Actions", cell: (a) => {
        const toggle = h("button", { type: "button" }, a.event_manager_enabled ? "Disable" : "Enable");
        const rotate = h("button", { type: "button" }, "Rotate key");
        toggle.addEventListener("click", () => act(a, a.event_manager_enabled ? "disable" : "enable").catch(toastError));
        rotate.addEventListener("click", () => act(a, "rotate").catch(toastError));
        return h("div", { class: "actions" }, toggle, rotate);
      } },
    ], known("applications"), "No applications created in this tab. Create one from a company's gear menu on the Companies page, or act on one by its id above.",
    { rowAttrs: (a) => ({ "data-id": a.id }) }));
  }

  onSubmit(form, async () => {
    await act({ id: id.value.trim() }, action);
  });
  refresh();
}
