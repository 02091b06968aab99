// Event delivery dashboard: counts by status per configuration, endpoint health, refreshing by
// itself, and a chart of the last 24 hours.
import { collect, get } from "../api.js";
import { fmtNumber, fmtTime, h, s } from "../dom.js";
import { badge, pageHeader, table } from "../ui.js";

const STATUSES = ["queued", "pending_retry", "held", "failed", "delivered", "handled", "buffered"];
const REFRESH_MS = 5000;
const CHART_EVERY = 6; // the chart's sample is heavier: every 6th refresh (30 s)
const CHART_SAMPLE = 2000;

export async function render(container) {
  const updated = h("span", { class: "updated", "aria-live": "off" });
  const pause = h("button", { type: "button", "aria-pressed": "false" }, "Pause auto-refresh");
  const chart = h("section", { class: "chart", "aria-labelledby": "chart-title" });
  const body = h("div");
  container.append(pageHeader("Event delivery dashboard", updated, pause), body,
    h("h2", { id: "chart-title" }, "Last 24 hours"), chart);
  let paused = false;
  let tick = 0;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume auto-refresh" : "Pause auto-refresh";
  });

  async function refresh() {
    const dashboard = await get("/v1/dashboard");
    const totals = Object.fromEntries(STATUSES.map((status) => [status, 0]));
    for (const row of dashboard.data) for (const status of STATUSES) totals[status] += row.counts[status] || 0;
    const countLink = (row, status) => {
      const value = row.counts[status] || 0;
      if (!value) return h("span", { class: "muted" }, "0");
      const query = new URLSearchParams({ status, delivery_configuration_id: row.delivery_configuration_id });
      return h("a", { href: `#/search?${query}`, "aria-label": `${value} ${status.replace("_", " ")} in ${row.name}` }, fmtNumber(value));
    };
    body.replaceChildren(
      h("div", { class: "counts", "aria-label": "Totals" }, STATUSES.map((status) =>
        h("span", { class: `badge status-${status}`, "data-total": status }, `${status.replace("_", " ")}: ${fmtNumber(totals[status])}`))),
      h("h2", {}, "By delivery configuration"),
      table([
        { label: "Configuration", cell: (r) => h("div", {}, h("strong", {}, r.name), h("div", { class: "muted" }, `${r.mode}${r.active ? "" : " · inactive"}`)) },
        ...STATUSES.map((status) => ({ label: status.replace("_", " "), className: "num", cell: (r) => countLink(r, status) })),
        { label: "Last success", cell: (r) => fmtTime(r.last_success_at) || "—" },
        { label: "Last failure", cell: (r) => fmtTime(r.last_failure_at) || "—" },
        { label: "Endpoint health", cell: (r) => (r.endpoints.length ? h("ul", {}, r.endpoints.map((e) => h("li", {},
          badge(e.health), " ", h("span", { class: "mono" }, e.url),
          e.success_rate === null ? "" : ` (${Math.round(e.success_rate * 100)}% of recent attempts succeeded)`,
          e.last_error ? h("div", { class: "muted" }, `last error: ${e.last_error}`) : null))) : "—") },
      ], dashboard.data, h("p", {}, "Nothing to show yet: create a ", h("a", { href: "#/configurations" }, "delivery configuration"),
        " and a ", h("a", { href: "#/subscriptions" }, "subscription"), ", and deliveries are counted here."),
      { rowAttrs: (r) => ({ "data-id": r.delivery_configuration_id, "data-name": r.name }) }));
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    if (tick % CHART_EVERY === 0) await drawChart(chart);
    tick += 1;
  }

  await refresh();
  const timer = setInterval(() => {
    if (!paused && document.visibilityState === "visible") refresh().catch(() => {});
  }, REFRESH_MS);
  return () => clearInterval(timer);
}

async function drawChart(chart) {
  const now = new Date();
  const end = new Date(now);
  end.setMinutes(0, 0, 0);
  end.setHours(end.getHours() + 1);
  const start = new Date(end.getTime() - 24 * 3600 * 1000);
  const { items, more } = await collect("/v1/events", { from: start.toISOString(), limit: 500 }, CHART_SAMPLE);
  const buckets = Array.from({ length: 24 }, (_, i) => ({ at: new Date(start.getTime() + i * 3600 * 1000), delivered: 0, failed: 0, other: 0 }));
  for (const event of items) {
    const index = Math.floor((new Date(event.received_at) - start) / 3600000);
    if (index < 0 || index > 23) continue;
    const kind = event.status === "delivered" || event.status === "handled" ? "delivered" : event.status === "failed" ? "failed" : "other";
    buckets[index][kind] += 1;
  }
  const max = Math.max(1, ...buckets.map((b) => b.delivered + b.failed + b.other));
  const width = 720;
  const height = 180;
  const left = 36;
  const bottom = 22;
  const plot = height - bottom - 8;
  const step = (width - left - 4) / 24;
  const y = (value) => (value / max) * plot;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-desc" },
    s("desc", { id: "chart-desc" }, `Events received per hour over the last 24 hours, by their current delivery status: ${
      buckets.reduce((n, b) => n + b.delivered, 0)} delivered or handled, ${buckets.reduce((n, b) => n + b.failed, 0)} failed, ${
      buckets.reduce((n, b) => n + b.other, 0)} other.`),
    s("line", { class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom }),
    s("line", { class: "axis", x1: left, y1: 8, x2: left, y2: height - bottom }),
    s("text", { x: left - 4, y: 12, "text-anchor": "end" }, String(max)),
    s("text", { x: left - 4, y: height - bottom, "text-anchor": "end" }, "0"));
  buckets.forEach((bucket, i) => {
    const x = left + 2 + i * step;
    let base = height - bottom;
    for (const kind of ["delivered", "failed", "other"]) {
      const value = bucket[kind];
      if (!value) continue;
      const barHeight = y(value);
      base -= barHeight;
      svg.append(s("rect", { class: `bar-${kind}`, x, y: base, width: Math.max(1, step - 3), height: barHeight, "data-kind": kind },
        s("title", {}, `${bucket.at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${value} ${kind}`)));
    }
    if (i % 3 === 0) {
      svg.append(s("text", { x: x + step / 2, y: height - 6, "text-anchor": "middle" },
        bucket.at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    }
  });
  chart.replaceChildren(svg,
    h("div", { class: "legend" }, h("span", { class: "l-delivered" }, "delivered or handled"), h("span", { class: "l-failed" }, "failed"),
      h("span", { class: "l-other" }, "queued, retrying or buffered")),
    h("p", { class: "hint" }, more
      ? `Events received per hour by their current status; the most recent ${fmtNumber(items.length)} events are drawn.`
      : `Events received per hour by their current status (${fmtNumber(items.length)} events).`));
}
