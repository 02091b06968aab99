// A company's own API keys: create (the key is shown once), rotate with a day's overlap, end the
// overlap, revoke. Scopes: read (look only), write (changes; includes read), bulk (republish,
// bulk actions, replays).
import { collect, post } from "../api.js";
import { fmtTime, h, localToIso } from "../dom.js";
import { badge, confirmAction, field, FormProblem, onSubmit, pageHeader, table, toastError } from "../ui.js";
import { showSecretOnce } from "./secret-once.js";

const SCOPES = [["read", "read: look only"], ["write", "write: change configurations (includes read)"],
  ["bulk", "bulk: republish, bulk actions, replays"]];
const OVERLAP_SECONDS = 86400;

function state(key) {
  if (key.revoked_at) return badge("revoked");
  if (key.expires_at && new Date(key.expires_at) <= new Date()) return badge("expired");
  return badge("active");
}

export async function render(container) {
  const name = h("input", { name: "name", required: true, maxlength: 200, placeholder: "reporting" });
  const scopes = h("fieldset", { "data-path": "scopes" }, h("legend", {}, "Scopes"),
    SCOPES.map(([scope, label]) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "scope", value: scope }), " ", label)));
  const expires = h("input", { name: "expires_at", type: "datetime-local" });
  const form = h("form", { class: "card", "aria-labelledby": "new-key" }, h("h2", { id: "new-key" }, "New API key"),
    field("Name", name, { path: "name" }), scopes, field("Expires", expires, { path: "expires_at", hint: "Empty: never" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create key")));
  const list = h("div");
  container.append(pageHeader("API keys"), h("p", { class: "muted" },
    "Keys for your applications' programs, each with only the scopes it needs. A key is shown once; rotating keeps the previous key working for a day."),
  form, list);

  const path = (key) => `/v1/api-keys/${encodeURIComponent(key.id)}`;

  async function act(key, what) {
    if (what === "rotate") {
      if (!(await confirmAction(`Rotate ${key.name}? The current key keeps working for one day.`, "Rotate key"))) return;
      const rotated = await post(`${path(key)}/rotate`, { overlap_seconds: OVERLAP_SECONDS });
      showSecretOnce(`New key for ${key.name}`, "API key", rotated.key);
    } else if (what === "end-overlap") {
      if (!(await confirmAction(`Refuse the previous key of ${key.name} now?`, "End overlap"))) return;
      await post(`${path(key)}/revoke-previous`, {});
    } else {
      if (!(await confirmAction(`Revoke ${key.name}? It is refused at once, everywhere.`, "Revoke"))) return;
      await post(`${path(key)}/revoke`, {});
    }
    await refresh();
  }

  function actions(key) {
    if (key.revoked_at) return "";
    const buttons = [["rotate", "Rotate"], ...(key.previous_expires_at ? [["end-overlap", "End overlap"]] : []), ["revoke", "Revoke"]];
    return h("div", { class: "actions" }, buttons.map(([what, label]) => {
      const button = h("button", { type: "button" }, label);
      button.addEventListener("click", () => act(key, what).catch(toastError));
      return button;
    }));
  }

  async function refresh() {
    list.replaceChildren(table([
      { label: "Key", cell: (k) => h("strong", {}, k.name) },
      { label: "Id", cell: (k) => h("span", { class: "mono" }, k.id) },
      { label: "Scopes", cell: (k) => k.scopes.join(", ") },
      { label: "Expires", cell: (k) => (k.expires_at ? fmtTime(k.expires_at) : "never") },
      { label: "State", cell: (k) => h("div", {}, state(k),
        k.previous_expires_at ? h("span", { class: "muted" }, ` previous key until ${fmtTime(k.previous_expires_at)}`) : "") },
      { label: "Actions", cell: actions },
    ], (await collect("/v1/api-keys")).items, "No API keys yet.", { rowAttrs: (k) => ({ "data-id": k.id }) }));
  }

  onSubmit(form, async (data) => {
    const chosen = data.getAll("scope").map(String);
    if (!chosen.length) throw new FormProblem(["scopes"], "choose at least one scope");
    const created = await post("/v1/api-keys", { name: name.value.trim(), scopes: chosen,
      expires_at: expires.value ? localToIso(expires.value) : null });
    form.reset();
    await refresh();
    showSecretOnce(`API key ${created.name}`, "API key", created.key);
  });
  await refresh();
}
