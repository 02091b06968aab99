// Delivery configurations: the table, New/Edit, Authentication, Activate/Deactivate, Pause/Resume,
// enabling an endpoint Event Manager disabled, Delete.
import { del, get, patch, post } from "../api.js";
import { fmtTime, h, isoToLocal, localToIso } from "../dom.js";
import {
  badge, checkbox, confirmAction, field, FormProblem, gear, loading, modal, onSubmit, pageHeader, select, table,
  toast, toastError,
} from "../ui.js";

const TIMEZONES = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : ["UTC"];

function describeThrottle(throttle) {
  return throttle ? `${throttle.max_requests} per ${throttle.per_seconds} s` : "—";
}

function describeSchedule(configuration) {
  const schedule = configuration.schedule;
  if (!schedule) return "—";
  const what = schedule.simple ? schedule.simple : `cron ${schedule.cron}`;
  const times = (configuration.next_fire_times || []).slice(0, 3);
  return h("div", {}, `${what} (${schedule.timezone || "UTC"})`,
    times.length ? h("ul", { class: "muted", "aria-label": "Next fire times" }, times.map((t) => h("li", {}, fmtTime(t)))) : null);
}

function describeAuthentication(authentication) {
  const type = authentication?.type || "none";
  if (type === "oauth2") return `OAuth 2.0 (${(authentication.grant_type || "").replace("_", " ")})`;
  if (type === "api_key") return `API key (${authentication.header_name})`;
  if (type === "mtls") return "Mutual TLS";
  return type === "basic" ? "Basic" : "None";
}

export async function render(container) {
  const body = h("div");
  const newButton = h("button", { type: "button", class: "primary" }, "New delivery configuration");
  container.append(pageHeader("Delivery configurations", newButton), body);
  newButton.addEventListener("click", () => openForm(null, refresh));

  async function refresh() {
    loading(body);
    const [configurations, dashboard] = await Promise.all([
      get("/v1/delivery-configurations"),
      get("/v1/dashboard").catch(() => ({ data: [] })),
    ]);
    const health = new Map();
    for (const row of dashboard.data) for (const endpoint of row.endpoints) health.set(endpoint.id, endpoint);
    body.replaceChildren(table([
      { label: "Name", cell: (c) => h("strong", {}, c.name) },
      { label: "Mode", cell: (c) => c.mode },
      { label: "Active", cell: (c) => badge(!c.active ? "inactive" : c.paused ? "paused" : "active") },
      { label: "Endpoints", cell: (c) => c.endpoints.length ? h("ul", {}, c.endpoints.map((e) => endpointItem(c, e, health, refresh))) : "—" },
      { label: "Format", cell: (c) => c.format.toUpperCase() },
      { label: "Throttle", cell: (c) => describeThrottle(c.throttle) },
      { label: "Schedule", cell: describeSchedule },
      { label: "Authentication", cell: (c) => describeAuthentication(c.authentication) },
      { label: "Actions", cell: (c) => gear(`Actions for ${c.name}`, [
        { label: "Edit", action: () => openForm(c, refresh) },
        { label: "Authentication", action: () => openAuthentication(c, refresh) },
        { label: c.active ? "Deactivate" : "Activate", action: () => setActive(c, !c.active, refresh) },
        ...(c.active ? [{ label: c.paused ? "Resume" : "Pause", action: () => setPaused(c, !c.paused, refresh) }] : []),
        { label: "Delete", danger: true, action: () => remove(c, refresh) },
      ]) },
    ], configurations, h("p", {}, "No delivery configurations yet. Create one with ",
      h("strong", {}, "New delivery configuration"), ": where events go (REST endpoints in near real time, or JSON files on a schedule)."),
    { caption: `${configurations.length} configuration${configurations.length === 1 ? "" : "s"}`,
      rowAttrs: (c) => ({ "data-id": c.id, "data-name": c.name }) }));
  }

  await refresh();
}

async function setActive(configuration, active, refresh) {
  try {
    await patch(`/v1/delivery-configurations/${encodeURIComponent(configuration.id)}`, { active });
    toast(`${configuration.name} is ${active ? "active" : "inactive"}.`);
    await refresh();
  } catch (error) {
    toastError(error);
  }
}

function endpointItem(configuration, endpoint, health, refresh) {
  if (endpoint.active) {
    return h("li", {}, h("span", { class: "mono" }, endpoint.url), " ", badge(health.get(endpoint.id)?.health || "unknown"));
  }
  if (!endpoint.disabled_reason) return h("li", {}, h("span", { class: "mono" }, endpoint.url), " ", badge("inactive"));
  const enable = h("button", { type: "button", class: "link" }, "Enable");
  enable.addEventListener("click", () => enableEndpoint(configuration, endpoint, refresh));
  return h("li", {}, h("span", { class: "mono" }, endpoint.url), " ", badge("disabled"), " ",
    h("span", { class: "muted disabled-reason" }, endpoint.disabled_reason), " ", enable);
}

async function setPaused(configuration, paused, refresh) {
  const path = `/v1/delivery-configurations/${encodeURIComponent(configuration.id)}/${paused ? "pause" : "resume"}`;
  try {
    const answer = await post(path, {});
    toast(paused ? `${configuration.name} is paused: its deliveries are held until you resume it.`
      : `${configuration.name} resumed: ${answer.released} held deliveries released.`);
    await refresh();
  } catch (error) {
    toastError(error);
  }
}

async function enableEndpoint(configuration, endpoint, refresh) {
  const sure = await confirmAction(
    `Enable ${endpoint.url} again and deliver to it what failed since it began failing?`, "Enable and republish");
  if (!sure) return;
  const path = `/v1/delivery-configurations/${encodeURIComponent(configuration.id)}/endpoints/${encodeURIComponent(endpoint.id)}/enable`;
  try {
    const answer = await post(path, { republish_failed: true });
    toast(`${endpoint.url} is enabled; ${answer.republished} failed deliveries republished.`);
    await refresh();
  } catch (error) {
    toastError(error);
  }
}

async function remove(configuration, refresh) {
  const sure = await confirmAction(
    `Delete the delivery configuration "${configuration.name}" and its subscriptions? Events will no longer be delivered through it.`,
    "Delete");
  if (!sure) return;
  try {
    await del(`/v1/delivery-configurations/${encodeURIComponent(configuration.id)}`);
    toast(`${configuration.name} was deleted.`);
    await refresh();
  } catch (error) {
    toastError(error);
  }
}

function endpointRow(list, endpoint = { url: "", active: true }) {
  const url = h("input", { type: "url", value: endpoint.url, placeholder: "https://crm.example.com/hooks",
    "aria-label": "Endpoint URL", class: "endpoint-url" });
  const active = h("input", { type: "checkbox", checked: endpoint.active, class: "endpoint-active" });
  const removeButton = h("button", { type: "button", class: "icon", "aria-label": "Remove this endpoint" }, "✕");
  const row = h("div", { class: "endpoint-row" }, url, h("label", { class: "check" }, active, " active"), removeButton);
  removeButton.addEventListener("click", () => {
    row.remove();
    renumber(list);
  });
  list.append(row);
  renumber(list);
  return url;
}

function renumber(list) {
  [...list.querySelectorAll(".endpoint-url")].forEach((input, index) => {
    input.dataset.path = `endpoints.${index}.url`;
    input.setAttribute("aria-label", `Endpoint ${index + 1} URL`);
  });
}

function openForm(existing, refresh) {
  const editing = Boolean(existing);
  const c = existing || { name: "", mode: "realtime", active: false, endpoints: [], format: "json", throttle: null,
    schedule: null, signing_secret_set: false };
  const name = h("input", { name: "name", required: true, maxlength: 200, value: c.name });
  const mode = select([["realtime", "Near real time (REST)"], ["scheduled", "Scheduled (JSON files)"]],
    { name: "mode", value: c.mode, disabled: editing });
  const active = checkbox("Active (deliver events now)", { name: "active", checked: c.active, "data-path": "active" });

  const endpointList = h("div", { class: "endpoint-list" });
  const endpoints = h("fieldset", { "data-path": "endpoints" }, h("legend", {}, "Endpoints"), endpointList);
  const addEndpoint = h("button", { type: "button" }, "Add endpoint");
  addEndpoint.addEventListener("click", () => endpointRow(endpointList).focus());
  endpoints.append(addEndpoint, h("p", { class: "hint" }, "Each event is sent to every active endpoint."));
  for (const endpoint of c.endpoints) endpointRow(endpointList, endpoint);
  if (!c.endpoints.length) endpointRow(endpointList);

  const format = select([["json", "JSON"], ["xml", "XML"]], { name: "format", value: c.format });
  const maxRequests = h("input", { type: "number", name: "max_requests", min: 1, max: 100000,
    value: c.throttle?.max_requests ?? "" });
  const perSeconds = h("input", { type: "number", name: "per_seconds", min: 0.001, step: "any",
    value: c.throttle?.per_seconds ?? "" });
  const throttle = h("fieldset", { "data-path": "throttle" }, h("legend", {}, "Throttle (optional)"),
    h("div", { class: "row" }, field("At most (requests)", maxRequests, { path: "throttle.max_requests" }),
      field("per (seconds)", perSeconds, { path: "throttle.per_seconds" })),
    h("p", { class: "hint" }, "Leave empty for no limit."));

  const schedule = c.schedule || { simple: "daily", timezone: "UTC" };
  const kindSimple = h("input", { type: "radio", name: "schedule_kind", value: "simple", checked: !schedule.cron });
  const kindCron = h("input", { type: "radio", name: "schedule_kind", value: "cron", checked: Boolean(schedule.cron) });
  const simple = select(["hourly", "daily", "weekly", "monthly"], { name: "simple", value: schedule.simple || "daily" });
  const cron = h("input", { name: "cron", value: schedule.cron || "", placeholder: "0 9 * * 1-5", class: "mono" });
  const timezone = h("input", { name: "timezone", value: schedule.timezone || "UTC", list: "em-timezones" });
  const zones = h("datalist", { id: "em-timezones" }, TIMEZONES.map((zone) => h("option", { value: zone })));
  const preview = h("div", { class: "preview", "aria-live": "polite" });
  const simpleField = field("Simple schedule", simple, { path: "schedule.simple" });
  const cronField = field("Cron expression (minute hour day-of-month month day-of-week)", cron, { path: "schedule.cron" });
  const scheduleSet = h("fieldset", { "data-path": "schedule" }, h("legend", {}, "Schedule"),
    h("div", {}, h("label", { class: "check" }, kindSimple, " Simple"), h("label", { class: "check" }, kindCron, " Cron")),
    simpleField, cronField, field("Time zone", timezone, { path: "schedule.timezone" }), zones,
    h("h3", {}, "Next fire times"), preview);

  const secret = h("input", { type: "password", name: "signing_secret", autocomplete: "new-password",
    placeholder: c.signing_secret_set ? "set (leave empty to keep)" : "whsec_…" });
  const removeSecret = c.signing_secret_set ? checkbox("Remove the signing secret", { name: "remove_secret" }) : null;
  const form = h("form", { novalidate: true },
    field("Name", name, { path: "name" }),
    field("Mode", mode, { path: "mode", hint: editing ? "The mode of a configuration cannot change." : null }),
    h("div", { class: "field", "data-path": "active" }, active),
    endpoints, field("Format", format, { path: "format" }), throttle, scheduleSet,
    field("Signing secret (Standard Webhooks, optional)", secret, { path: "signing_secret",
      hint: "Write-only: it is never shown again. Receivers verify the webhook-signature header with it." }),
    removeSecret,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, editing ? "Save" : "Create")));

  function showMode() {
    const scheduled = mode.value === "scheduled";
    endpoints.hidden = scheduled;
    throttle.hidden = scheduled;
    format.closest(".field").hidden = scheduled;
    scheduleSet.hidden = !scheduled;
    simpleField.hidden = kindCron.checked;
    cronField.hidden = !kindCron.checked;
    if (scheduled) refreshPreview();
  }

  let previewTimer = null;
  function refreshPreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(async () => {
      const query = kindCron.checked ? { cron: cron.value } : { simple: simple.value };
      try {
        const answer = await get("/v1/schedules/preview", { ...query, timezone: timezone.value || "UTC", count: 5 });
        preview.replaceChildren(h("ul", {}, answer.fire_times.map((t) => h("li", {}, fmtTime(t)))));
      } catch (error) {
        preview.replaceChildren(h("p", { class: "field-error" }, error.message));
      }
    }, 300);
  }

  for (const control of [mode, kindSimple, kindCron]) control.addEventListener("change", showMode);
  for (const control of [simple, cron, timezone]) control.addEventListener("input", refreshPreview);

  onSubmit(form, async () => {
    const scheduled = mode.value === "scheduled";
    const values = { name: name.value.trim(), active: active.querySelector("input").checked };
    if (!scheduled) {
      values.endpoints = [...endpointList.querySelectorAll(".endpoint-row")].map((row) => ({
        url: row.querySelector(".endpoint-url").value.trim(), active: row.querySelector(".endpoint-active").checked,
      })).filter((endpoint) => endpoint.url);
      values.format = format.value;
      if (maxRequests.value || perSeconds.value) {
        values.throttle = { max_requests: Number(maxRequests.value), per_seconds: Number(perSeconds.value) };
      } else if (editing) {
        values.throttle = null;
      }
    } else {
      values.schedule = kindCron.checked
        ? { cron: cron.value.trim(), timezone: timezone.value.trim() || "UTC" }
        : { simple: simple.value, timezone: timezone.value.trim() || "UTC" };
    }
    if (secret.value) values.signing_secret = secret.value;
    else if (removeSecret?.querySelector("input").checked) values.signing_secret = null;
    if (!values.name) throw new FormProblem(["name"], "give the configuration a name");
    if (editing) {
      await patch(`/v1/delivery-configurations/${encodeURIComponent(c.id)}`, values);
      toast(`${values.name} was saved.`);
    } else {
      values.mode = mode.value;
      await post("/v1/delivery-configurations", values);
      toast(`${values.name} was created. Set its authentication from the gear menu if the endpoint needs it.`);
    }
    close();
    await refresh();
  });

  const { close } = modal(editing ? `Edit ${c.name}` : "New delivery configuration", form, { wide: true });
  showMode();
}

function openAuthentication(configuration, refresh) {
  const current = configuration.authentication || { type: "none" };
  const types = [["none", "None"], ["basic", "Basic Auth"], ["oauth2", "OAuth 2.0"], ["api_key", "API key"], ["mtls", "Mutual TLS"]];
  const radios = types.map(([value, label]) => h("label", { class: "check" },
    h("input", { type: "radio", name: "type", value, checked: current.type === value }), " ", label));
  const typeSet = h("fieldset", { "data-path": "authentication.type" }, h("legend", {}, "Authentication method"), radios);
  const secretHint = (flag) => (current[flag] ? "Stored. Write-only: enter it again to save a change." : "Write-only: never shown again.");

  const basicUser = h("input", { name: "username", autocomplete: "off", value: current.type === "basic" ? current.username || "" : "" });
  const basicPassword = h("input", { type: "password", name: "password", autocomplete: "new-password" });
  const basic = h("fieldset", { "data-path": "authentication" }, h("legend", {}, "Basic Auth"),
    field("Username", basicUser, { path: "authentication.username" }),
    field("Password", basicPassword, { path: "authentication.password", hint: current.type === "basic" ? secretHint("password_set") : "Write-only: never shown again." }));

  const o = current.type === "oauth2" ? current : {};
  const grant = select([["client_credentials", "Client credentials"], ["password", "Password"], ["refresh_token", "Refresh token"]],
    { name: "grant_type", value: o.grant_type || "client_credentials" });
  const tokenUrl = h("input", { type: "url", name: "token_url", value: o.token_url || "", placeholder: "https://auth.example.com/oauth/token" });
  const clientId = h("input", { name: "client_id", autocomplete: "off", value: o.client_id || "" });
  const clientSecret = h("input", { type: "password", name: "client_secret", autocomplete: "new-password" });
  const scope = h("input", { name: "scope", value: o.scope || "", placeholder: "optional, e.g. Reporting" });
  const clientAuth = select([["client_secret_basic", "Authorization header (client_secret_basic)"], ["client_secret_post", "In the form (client_secret_post)"]],
    { name: "client_auth_method", value: o.client_auth_method || "client_secret_basic" });
  const audience = h("input", { name: "audience", value: o.audience || "", placeholder: "optional, e.g. https://crm.example.com/api" });
  const resource = h("input", { name: "resource", value: o.resource || "", placeholder: "optional (RFC 8707)" });
  const oUser = h("input", { name: "oauth_username", autocomplete: "off", value: o.username || "" });
  const oPassword = h("input", { type: "password", name: "oauth_password", autocomplete: "new-password" });
  const refreshToken = h("input", { type: "password", name: "refresh_token", autocomplete: "off" });
  const expires = h("input", { type: "datetime-local", name: "refresh_token_expires_at", value: isoToLocal(o.refresh_token_expires_at) });
  const passwordGrant = h("div", {}, field("Username", oUser, { path: "authentication.username" }),
    field("Password", oPassword, { path: "authentication.password", hint: o.password_set ? secretHint("password_set") : "Write-only." }));
  const refreshGrant = h("div", {}, field("Refresh token", refreshToken, { path: "authentication.refresh_token",
    hint: o.refresh_token_set ? secretHint("refresh_token_set") : "Write-only: Event Manager stores it encrypted." }),
  field("Refresh token times out at (optional)", expires, { path: "authentication.refresh_token_expires_at",
    hint: "After this time the stored refresh token is no longer used and deliveries fail with a clear error." }));
  const oauth = h("fieldset", { "data-path": "authentication" }, h("legend", {}, "OAuth 2.0"),
    field("Grant type", grant, { path: "authentication.grant_type" }),
    field("Access token URL", tokenUrl, { path: "authentication.token_url" }),
    field("Client ID", clientId, { path: "authentication.client_id" }),
    field("Client secret", clientSecret, { path: "authentication.client_secret", hint: o.client_secret_set ? secretHint("client_secret_set") : "Write-only: never shown again." }),
    field("Scope (optional)", scope, { path: "authentication.scope" }),
    passwordGrant, refreshGrant,
    field("Client authentication", clientAuth, { path: "authentication.client_auth_method" }),
    field("Audience (optional)", audience, { path: "authentication.audience" }),
    field("Resource (optional)", resource, { path: "authentication.resource" }));

  const k = current.type === "api_key" ? current : {};
  const headerName = h("input", { name: "header_name", autocomplete: "off", value: k.header_name || "X-API-Key" });
  const apiKey = h("input", { type: "password", name: "api_key", autocomplete: "new-password" });
  const apiKeySet = h("fieldset", { "data-path": "authentication" }, h("legend", {}, "API key"),
    field("Header name", headerName, { path: "authentication.header_name" }),
    field("Key", apiKey, { path: "authentication.api_key", hint: k.api_key_set ? secretHint("api_key_set") : "Write-only: never shown again." }));

  const m = current.type === "mtls" ? current : {};
  const pem = (name, placeholder) => h("textarea", { name, autocomplete: "off", spellcheck: "false", placeholder });
  const certificate = pem("certificate", "-----BEGIN CERTIFICATE-----");
  const privateKey = pem("private_key", "-----BEGIN PRIVATE KEY-----");
  const caBundle = pem("ca_bundle", "optional: the CA certificates of a private PKI");
  const mtls = h("fieldset", { "data-path": "authentication" }, h("legend", {}, "Mutual TLS"),
    field("Client certificate (PEM)", certificate, { path: "authentication.certificate",
      hint: m.certificate_set ? `Stored: ${m.certificate_subject || "a certificate"}, expires ${m.certificate_expires_at ? fmtTime(m.certificate_expires_at) : "?"}. Write-only: paste it again to save a change.` : "Write-only: never shown again." }),
    field("Private key (PEM, unencrypted)", privateKey, { path: "authentication.private_key", hint: "Write-only: never shown again." }),
    field("CA bundle (PEM, optional)", caBundle, { path: "authentication.ca_bundle" }));

  const form = h("form", { novalidate: true }, typeSet, basic, oauth, apiKeySet, mtls,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save authentication")));
  const selected = () => form.querySelector("input[name=type]:checked")?.value || "none";
  function show() {
    basic.hidden = selected() !== "basic";
    oauth.hidden = selected() !== "oauth2";
    apiKeySet.hidden = selected() !== "api_key";
    mtls.hidden = selected() !== "mtls";
    passwordGrant.hidden = grant.value !== "password";
    refreshGrant.hidden = grant.value !== "refresh_token";
  }
  form.addEventListener("change", show);

  onSubmit(form, async () => {
    const type = selected();
    let authentication = { type };
    if (type === "basic") {
      authentication = { type, username: basicUser.value, password: basicPassword.value };
      if (!basicPassword.value) throw new FormProblem(["authentication", "password"], "enter the password (it is write-only)");
    } else if (type === "oauth2") {
      authentication = { type, grant_type: grant.value, token_url: tokenUrl.value.trim(), client_id: clientId.value,
        client_secret: clientSecret.value };
      if (scope.value.trim()) authentication.scope = scope.value.trim();
      if (grant.value === "password") Object.assign(authentication, { username: oUser.value, password: oPassword.value });
      if (grant.value === "refresh_token") {
        authentication.refresh_token = refreshToken.value;
        if (expires.value) authentication.refresh_token_expires_at = localToIso(expires.value);
      }
      if (!clientSecret.value) throw new FormProblem(["authentication", "client_secret"], "enter the client secret (it is write-only)");
      if (clientAuth.value !== "client_secret_basic") authentication.client_auth_method = clientAuth.value;
      if (audience.value.trim()) authentication.audience = audience.value.trim();
      if (resource.value.trim()) authentication.resource = resource.value.trim();
    } else if (type === "api_key") {
      authentication = { type, header_name: headerName.value.trim(), api_key: apiKey.value };
      if (!apiKey.value) throw new FormProblem(["authentication", "api_key"], "enter the key (it is write-only)");
    } else if (type === "mtls") {
      authentication = { type, certificate: certificate.value, private_key: privateKey.value };
      if (caBundle.value.trim()) authentication.ca_bundle = caBundle.value;
      if (!certificate.value.trim()) throw new FormProblem(["authentication", "certificate"], "paste the client certificate (it is write-only)");
      if (!privateKey.value.trim()) throw new FormProblem(["authentication", "private_key"], "paste the private key (it is write-only)");
    }
    await patch(`/v1/delivery-configurations/${encodeURIComponent(configuration.id)}`, { authentication });
    toast(`Authentication of ${configuration.name} was saved.`);
    close();
    await refresh();
  });
  const { close } = modal(`Authentication: ${configuration.name}`, form, { wide: true });
  show();
}
