// Event buffer files: the JSON files scheduled configurations write, per window, with download.
import { api, get } from "../api.js";
import { fmtBytes, fmtNumber, fmtTime, h } from "../dom.js";
import { badge, field, onSubmit, Pager, pageHeader, select, table, toastError } from "../ui.js";

export async function render(container, { params }) {
  const configurations = (await get("/v1/delivery-configurations")).filter((c) => c.mode === "scheduled");
  const names = new Map(configurations.map((c) => [c.id, c.name]));
  container.append(pageHeader("Event buffer files"),
    h("p", { class: "muted" }, "Scheduled configurations collect their events into one JSON file per window, stored in media storage and announced on the MSS-Messages topic."));
  if (!configurations.length) {
    container.append(h("div", { class: "empty" }, h("p", {}, "No scheduled delivery configuration yet. ",
      h("a", { href: "#/configurations" }, "Create one"), " with mode “Scheduled” and a subscription; its files are listed here after each window.")));
    return null;
  }
  const configuration = select([["", "every scheduled configuration"], ...configurations.map((c) => [c.id, c.name])],
    { name: "delivery_configuration_id", value: params.get("delivery_configuration_id") || "" });
  const status = select([["", "any status"], "stored", "writing", "failed", "empty"], { name: "status", value: params.get("status") || "" });
  const form = h("form", { class: "card", role: "search", "aria-label": "Buffer file filters" },
    h("div", { class: "filters" }, field("Delivery configuration", configuration, { path: "delivery_configuration_id" }),
      field("Status", status, { path: "status" })),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Show")));
  const results = h("div");
  const pager = new Pager(async (cursor) => {
    const page = await get("/v1/buffer-files", { delivery_configuration_id: configuration.value, status: status.value, limit: 25, cursor });
    results.replaceChildren(table([
      { label: "Configuration", cell: (f) => names.get(f.delivery_configuration_id) || f.delivery_configuration_id },
      { label: "Window", cell: (f) => `${f.window_start ? fmtTime(f.window_start) : "start"} → ${fmtTime(f.window_end)}` },
      { label: "Status", cell: (f) => h("div", {}, badge(f.status), f.error ? h("div", { class: "muted" }, f.error) : null) },
      { label: "Events", className: "num", cell: (f) => fmtNumber(f.event_count) },
      { label: "Size", className: "num", cell: (f) => fmtBytes(f.size_bytes) },
      { label: "Written", cell: (f) => fmtTime(f.created_at) },
      { label: "Download", cell: (f) => (f.status === "stored" ? downloadButton(f) : "—") },
    ], page.data, "No buffer files for this selection yet: a file is written when a window of the schedule closes.",
    { rowAttrs: (f) => ({ "data-id": f.id }) }));
    return page;
  });
  container.append(form, results, pager.element);
  onSubmit(form, () => pager.first());
  await pager.first();
  return null;
}

function downloadButton(file) {
  const button = h("button", { type: "button", "aria-label": `Download the file of the window ending ${fmtTime(file.window_end)}` }, "Download");
  button.addEventListener("click", async () => {
    // The download needs the Authorization header, so it is fetched and handed to the browser as a blob.
    button.disabled = true;
    try {
      const response = await api("GET", `/v1/buffer-files/${encodeURIComponent(file.id)}/download`, { raw: true });
      const blob = await response.blob();
      const link = h("a", { href: URL.createObjectURL(blob), download: `${file.id}.json` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (error) {
      toastError(error);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}
