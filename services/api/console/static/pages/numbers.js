// Monitored numbers (Phone Number Verification proactive feeds): count, find, add and remove by
// pasting or uploading a CSV, sent in chunks below the API's per-request limit, with progress.
import { api, get } from "../api.js";
import { fmtNumber, h } from "../dom.js";
import { confirmAction, field, FormProblem, onSubmit, Pager, pageHeader, table, toast, toastError } from "../ui.js";

export const CHUNK = 10000; // numbers per request (the API takes up to 200,000; smaller chunks show progress)
const E164 = /^\+[1-9][0-9]{6,14}$/; // as the API checks them
const PAGE = 100;
const SCAN_PAGE = 10000;

/** Numbers from pasted text or a CSV: every cell that looks like a phone number; other cells (headers) are skipped. */
export function parseNumbers(text) {
  const numbers = [];
  const invalid = [];
  let skipped = 0;
  const seen = new Set();
  const lines = text.split(/\r?\n/);
  // A CSV whose header names a phone-number column: only that column is read.
  const header = (lines[0] || "").split(/[,;\t]/).map((cell) => cell.trim().replace(/^"|"$/g, ""));
  const column = header.some((cell) => E164.test(cell.replace(/[\s().-]/g, "")))
    ? -1 : header.findIndex((cell) => /number|phone|msisdn|e\.?164/i.test(cell));
  for (const [lineIndex, line] of lines.entries()) {
    const cells = line.split(/[,;\t]/);
    if (column >= 0 && lineIndex === 0) {
      skipped += 1;
      continue;
    }
    for (const rawCell of column >= 0 ? cells.slice(column, column + 1) : cells) {
      const cell = rawCell.trim().replace(/^"|"$/g, "").replace(/[\s().-]/g, "");
      if (!cell) continue;
      if (!/^\+?[0-9]+$/.test(cell)) {
        skipped += 1;
        continue;
      }
      if (!E164.test(cell)) {
        invalid.push(`line ${lineIndex + 1}: ${rawCell.trim()}`);
        continue;
      }
      if (!seen.has(cell)) {
        seen.add(cell);
        numbers.push(cell);
      }
    }
  }
  return { numbers, invalid, skipped };
}

export async function render(container) {
  const count = h("p", { class: "count", "aria-live": "polite" });
  const countButton = h("button", { type: "button", hidden: true }, "Count all");
  const listBody = h("div");
  const pager = new Pager(async (cursor) => {
    const page = await get("/v1/monitored-numbers", { limit: PAGE, cursor });
    listBody.replaceChildren(table([{ label: "Number", cell: (n) => h("span", { class: "mono" }, n) }],
      page.data, "No monitored numbers yet. Add some below: NIS-Events about a number reach you only while you monitor it."));
    if (!cursor) {
      countButton.hidden = !page.next_cursor;
      count.textContent = page.next_cursor ? `More than ${fmtNumber(page.data.length)} numbers monitored.`
        : `${fmtNumber(page.data.length)} number${page.data.length === 1 ? "" : "s"} monitored.`;
    }
    return page;
  });

  countButton.addEventListener("click", async () => {
    countButton.disabled = true;
    try {
      let total = 0;
      let cursor = null;
      do {
        const page = await get("/v1/monitored-numbers", { limit: SCAN_PAGE, cursor });
        total += page.data.length;
        cursor = page.next_cursor;
        count.textContent = `${cursor ? "Counting… " : ""}${fmtNumber(total)} numbers monitored.`;
      } while (cursor);
      countButton.hidden = true;
    } catch (error) {
      toastError(error);
    } finally {
      countButton.disabled = false;
    }
  });

  // Find: the API lists numbers in order without a search filter, so the console scans the pages.
  const needle = h("input", { type: "search", name: "q", placeholder: "+1415555", inputmode: "tel" });
  const found = h("div", { "aria-live": "polite" });
  const findForm = h("form", { class: "card", role: "search", "aria-label": "Find monitored numbers" },
    h("div", { class: "row bottom" }, field("Find numbers containing", needle, { path: "q" }),
      h("div", { class: "field" }, h("button", { type: "submit", class: "primary" }, "Find"))), found);
  onSubmit(findForm, async () => {
    const wanted = needle.value.replace(/[\s().-]/g, "");
    if (!wanted) throw new FormProblem(["q"], "type part of a number");
    const matches = [];
    let cursor = null;
    let scanned = 0;
    do {
      const page = await get("/v1/monitored-numbers", { limit: SCAN_PAGE, cursor });
      scanned += page.data.length;
      matches.push(...page.data.filter((n) => n.includes(wanted)));
      cursor = page.next_cursor;
    } while (cursor && matches.length < 200);
    found.replaceChildren(h("p", {}, `${matches.length}${cursor ? "+" : ""} match${matches.length === 1 ? "" : "es"} among ${fmtNumber(scanned)} numbers.`),
      matches.length ? h("ul", { class: "mono found" }, matches.map((n) => h("li", {}, n))) : null);
  });

  // Add / remove.
  const text = h("textarea", { name: "numbers", rows: 6, placeholder: "+14155550100\n+4915123456789", spellcheck: "false" });
  const file = h("input", { type: "file", name: "file", accept: ".csv,.txt,text/csv,text/plain" });
  const progress = h("progress", { max: 1, value: 0, hidden: true, "aria-label": "Upload progress" });
  const status = h("p", { class: "upload-status", "aria-live": "polite" });
  const addButton = h("button", { type: "submit", class: "primary", value: "add" }, "Add numbers");
  const removeButton = h("button", { type: "submit", class: "danger", value: "remove" }, "Remove numbers");
  const changeForm = h("form", { class: "card", "aria-labelledby": "change-title" },
    h("h2", { id: "change-title" }, "Add or remove numbers"),
    field("Paste numbers (one per line, or comma-separated)", text, { path: "numbers",
      hint: "E.164: + and 7 to 15 digits. Spaces, dashes and brackets are ignored; a CSV header is skipped." }),
    field("…or upload a CSV file", file, { path: "file" }),
    h("div", { class: "actions" }, addButton, removeButton, progress), status);
  let action = "add";
  addButton.addEventListener("click", () => { action = "add"; });
  removeButton.addEventListener("click", () => { action = "remove"; });
  onSubmit(changeForm, async () => {
    const source = file.files.length ? await file.files[0].text() : text.value;
    const { numbers, invalid, skipped } = parseNumbers(source);
    if (invalid.length) {
      throw new FormProblem([file.files.length ? "file" : "numbers"],
        `${invalid.length} not E.164 (+ and 7-15 digits): ${invalid.slice(0, 5).join("; ")}${invalid.length > 5 ? " …" : ""}`);
    }
    if (!numbers.length) throw new FormProblem([file.files.length ? "file" : "numbers"], "no phone numbers found");
    if (action === "remove" && !(await confirmAction(`Stop monitoring ${fmtNumber(numbers.length)} number${numbers.length === 1 ? "" : "s"}?`, "Remove"))) return;
    const chunks = Math.ceil(numbers.length / CHUNK);
    progress.hidden = false;
    progress.max = numbers.length;
    progress.value = 0;
    let changed = 0;
    let unchanged = 0;
    for (let index = 0; index < chunks; index += 1) {
      const chunk = numbers.slice(index * CHUNK, (index + 1) * CHUNK);
      status.textContent = `Sending chunk ${index + 1} of ${chunks}…`;
      let result;
      try {
        result = await api(action === "add" ? "POST" : "DELETE", "/v1/monitored-numbers", { body: { numbers: chunk } });
      } catch (error) {
        status.textContent = `Stopped at chunk ${index + 1} of ${chunks} (${fmtNumber(index * CHUNK)} numbers done): ${error.message}`;
        throw error;
      }
      changed += action === "add" ? result.added : result.removed;
      unchanged += action === "add" ? result.already_present : result.not_present;
      progress.value = Math.min(numbers.length, (index + 1) * CHUNK);
    }
    status.textContent = action === "add"
      ? `Done: ${chunks} of ${chunks} chunks, ${fmtNumber(changed)} added, ${fmtNumber(unchanged)} already present${skipped ? `, ${fmtNumber(skipped)} other cell${skipped === 1 ? "" : "s"} skipped` : ""}.`
      : `Done: ${chunks} of ${chunks} chunks, ${fmtNumber(changed)} removed, ${fmtNumber(unchanged)} were not monitored.`;
    toast(status.textContent);
    text.value = "";
    file.value = "";
    await pager.first();
  });

  container.append(pageHeader("Monitored numbers", countButton), h("p", { class: "muted" },
    "Phone Number Verification: NIS-Events (ported, deactivated, disconnected) about these numbers are delivered to you."),
  count, changeForm, findForm, h("h2", {}, "Numbers"), listBody, pager.element);
  await pager.first();
  return null;
}
