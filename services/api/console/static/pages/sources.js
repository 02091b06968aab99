// Operator: source services, the topics (and companies) each may publish, and their tokens:
// rotate with a day's overlap, end the overlap, disable, delete.
import { del, get, patch, post } from "../api.js";
import { fmtTime, h } from "../dom.js";
import { badge, confirmAction, field, FormProblem, onSubmit, pageHeader, table, toast, toastError } from "../ui.js";
import { showSecretOnce } from "./secret-once.js";

// The seeded catalog, offered as suggestions (the operator API has no catalog listing).
const SEEDED = ["SCG-Keyword", "SCG-Sender ID", "SCG-Voice-Call", "SCG-Contact", "SCG-Message",
  "SCG-Communication-Assistant", "NIS-Events", "MSS-Messages", "ABA-Messages"];
const OVERLAP_SECONDS = 86400;

export async function render(container) {
  const name = h("input", { name: "name", required: true, maxlength: 200, placeholder: "sms-gateway" });
  const boxes = SEEDED.map((topic) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "topic", value: topic }), " ", topic));
  const other = h("input", { name: "other", placeholder: "other topics, comma-separated" });
  const topics = h("fieldset", { "data-path": "topics" }, h("legend", {}, "Topics it may publish"), boxes,
    field("Other catalog topics", other, { path: "topics.other" }));
  const companies = h("input", { name: "company_ids", class: "mono", placeholder: "cmp_…, cmp_… (empty: any company)" });
  const form = h("form", { class: "card", "aria-labelledby": "new-source" }, h("h2", { id: "new-source" }, "New source service"),
    field("Name", name, { path: "name" }), topics,
    field("Only for companies", companies, { path: "company_ids", hint: "Broadcast topics (NIS-Events) are not limited by it" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create source")));
  const list = h("div");
  container.append(pageHeader("Sources"), h("p", { class: "muted" },
    "Source services (SMS, voice, number verification, media storage, batch automation) publish events to the ingest service with their token, only on the topics granted here."),
  form, h("h2", {}, "Source services"), list);

  const path = (source) => `/v1/admin/sources/${encodeURIComponent(source.id)}`;

  async function act(source, what) {
    if (what === "rotate") {
      if (!(await confirmAction(`Rotate the token of ${source.name}? The current token keeps working for one day.`, "Rotate token"))) return;
      const rotated = await post(`${path(source)}/rotate-token`, { overlap_seconds: OVERLAP_SECONDS });
      showSecretOnce(`New token of ${source.name}`, "Source token", rotated.token);
    } else if (what === "end-overlap") {
      if (!(await confirmAction(`Refuse the previous token of ${source.name} now?`, "End overlap"))) return;
      await post(`${path(source)}/revoke-previous-token`, {});
    } else if (what === "delete") {
      if (!(await confirmAction(`Delete ${source.name}? Its tokens are refused at once.`, "Delete"))) return;
      await del(path(source));
    } else {
      await patch(path(source), { enabled: what === "enable" });
      toast(`${source.name}: ${what === "enable" ? "enabled" : "disabled"}.`);
    }
    await refresh();
  }

  function actions(source) {
    const buttons = [[source.enabled ? "disable" : "enable", source.enabled ? "Disable" : "Enable"], ["rotate", "Rotate token"],
      ...(source.previous_token_expires_at ? [["end-overlap", "End overlap"]] : []), ["delete", "Delete"]];
    return h("div", { class: "actions" }, buttons.map(([what, label]) => {
      const button = h("button", { type: "button" }, label);
      button.addEventListener("click", () => act(source, what).catch(toastError));
      return button;
    }));
  }

  async function refresh() {
    const sources = await get("/v1/admin/sources");
    list.replaceChildren(table([
      { label: "Source", cell: (s) => h("strong", {}, s.name) },
      { label: "Id", cell: (s) => h("span", { class: "mono" }, s.id) },
      { label: "Topics", cell: (s) => s.topics.join(", ") },
      { label: "Companies", cell: (s) => (s.company_ids ? s.company_ids.join(", ") : "any") },
      { label: "State", cell: (s) => h("div", {}, badge(s.enabled ? "active" : "inactive"),
        s.previous_token_expires_at ? h("span", { class: "muted" }, ` previous token until ${fmtTime(s.previous_token_expires_at)}`) : "") },
      { label: "Actions", cell: actions },
    ], sources, "No sources yet.", { rowAttrs: (s) => ({ "data-id": s.id }) }));
  }

  onSubmit(form, async (data) => {
    const chosen = [...data.getAll("topic").map(String), ...other.value.split(",").map((t) => t.trim()).filter(Boolean)];
    if (!chosen.length) throw new FormProblem(["topics"], "grant at least one topic");
    const limited = companies.value.split(",").map((c) => c.trim()).filter(Boolean);
    const source = await post("/v1/admin/sources", { name: name.value.trim(), topics: chosen,
      company_ids: limited.length ? limited : null });
    form.reset();
    await refresh();
    showSecretOnce(`Token of ${source.name}`, "Source token", source.token);
  });
  await refresh();
}
