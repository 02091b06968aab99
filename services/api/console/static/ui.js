// Shared widgets: fields with their error slots, modals (<dialog>), confirmations, gear menus,
// tables with empty states, status badges, the toast, and problem+json errors shown in place.
import { ApiError } from "./api.js";
import { h, uid } from "./dom.js";

/** A labelled control. `path` is the API field it edits (dotted), where its 422 errors appear. */
export function field(label, control, { path, hint, className } = {}) {
  const id = control.id || uid("in");
  control.id = id;
  if (path) control.dataset.path = path;
  const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: `field ${className || ""}`.trim() }, h("label", { for: id }, label), control, hintEl);
}

export function checkbox(label, attrs = {}) {
  const input = h("input", { type: "checkbox", ...attrs });
  return h("label", { class: "check" }, input, " ", label);
}

export function select(options, attrs = {}) {
  const element = h("select", attrs);
  for (const option of options) {
    const [value, text] = Array.isArray(option) ? option : [option, option];
    element.append(h("option", { value, selected: attrs.value === value }, text));
  }
  if (attrs.value !== undefined) element.value = attrs.value;
  return element;
}

/** Clear a form's previous errors. */
export function clearErrors(form) {
  for (const element of form.querySelectorAll(".field-error, .form-error")) element.remove();
  for (const element of form.querySelectorAll("[aria-invalid]")) {
    element.removeAttribute("aria-invalid");
    const described = (element.getAttribute("aria-describedby") || "").split(" ").filter((id) => !id.endsWith("-err"));
    if (described.length) element.setAttribute("aria-describedby", described.join(" "));
    else element.removeAttribute("aria-describedby");
  }
}

function controlFor(form, loc) {
  // The deepest element whose data-path is a prefix of the error's location.
  for (let length = loc.length; length > 0; length -= 1) {
    const path = loc.slice(0, length).join(".");
    const candidates = form.querySelectorAll(`[data-path="${CSS.escape(path)}"]`);
    const element = [...candidates].find((candidate) => candidate.getClientRects().length > 0);
    if (element) return { element, path };
  }
  return null;
}

function errorText(loc, path, msg) {
  const rest = loc.slice(path.split(".").length);
  return rest.length ? `${loc.join(".")}: ${msg}` : msg;
}

/** Show an API error on a form: each `errors[].loc` next to its field, the rest at the top. */
export function showErrors(form, error) {
  clearErrors(form);
  const general = [];
  const errors = error instanceof ApiError ? error.errors : [];
  for (const item of errors) {
    const loc = (item.loc || []).filter((part, index) => !(index === 0 && (part === "body" || part === "query")));
    const found = controlFor(form, loc.map(String));
    if (!found) {
      general.push(loc.length ? `${loc.join(".")}: ${item.msg}` : item.msg);
      continue;
    }
    const { element, path } = found;
    const message = h("p", { class: "field-error", id: `${element.id || uid("x")}-${uid("e")}-err`, role: "alert" },
      errorText(loc, path, item.msg));
    element.setAttribute("aria-invalid", "true");
    const describedBy = [element.getAttribute("aria-describedby"), message.id].filter(Boolean).join(" ");
    element.setAttribute("aria-describedby", describedBy);
    const container = element.tagName === "FIELDSET" ? element : element.closest(".field") || element.parentElement;
    container.append(message);
  }
  if (!errors.length) general.push(error.message || String(error));
  if (general.length) {
    form.prepend(h("div", { class: "form-error", role: "alert" }, general.map((text) => h("p", {}, text))));
  }
  const first = form.querySelector("[aria-invalid=true]");
  if (first && typeof first.focus === "function") first.focus();
}

/** Run `action` on submit, with the button disabled and errors shown on the form. */
export function onSubmit(form, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button[type=submit]");
    for (const button of buttons) button.disabled = true;
    clearErrors(form);
    try {
      await action(new FormData(form));
    } catch (error) {
      if (!(error instanceof ApiError) && !(error instanceof FormProblem)) console.warn(error);
      showErrors(form, error);
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  });
  return form;
}

/** A client-side check that failed, in the API's shape, so it is shown the same way. */
export class FormProblem extends ApiError {
  constructor(loc, msg) {
    super(422, { title: "Unprocessable Content", detail: msg, errors: [{ loc, msg }] });
  }
}

/** A modal dialog. Returns {dialog, close}; `body` may contain a form. */
export function modal(title, body, { wide = false, onClose } = {}) {
  const titleId = uid("dlg");
  const closeButton = h("button", { type: "button", class: "icon close", "aria-label": "Close" }, "×");
  const dialog = h("dialog", { class: wide ? "wide" : "", "aria-labelledby": titleId },
    h("header", {}, h("h2", { id: titleId }, title), closeButton), body);
  const opener = document.activeElement;
  const close = () => dialog.close();
  closeButton.addEventListener("click", close);
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (onClose) onClose();
    if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  const first = dialog.querySelector("input:not([type=hidden]):not([disabled]), select, textarea");
  if (first) first.focus();
  return { dialog, close };
}

/** Ask before a destructive action; resolves true when confirmed. */
export function confirmAction(message, confirmLabel = "Confirm", { danger = true } = {}) {
  return new Promise((resolve) => {
    let answer = false;
    const yes = h("button", { type: "button", class: danger ? "danger" : "primary" }, confirmLabel);
    const no = h("button", { type: "button" }, "Cancel");
    const { close } = modal("Please confirm", h("div", { class: "confirm" }, h("p", {}, message),
      h("div", { class: "actions" }, no, yes)), { onClose: () => resolve(answer) });
    yes.addEventListener("click", () => {
      answer = true;
      close();
    });
    no.addEventListener("click", close);
    no.focus();
  });
}

let toastTimer = null;
export function toast(message, kind = "info") {
  const element = document.getElementById("toast");
  element.className = `toast ${kind}`;
  element.setAttribute("role", kind === "error" ? "alert" : "status");
  element.textContent = message;
  element.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    element.hidden = true;
  }, kind === "error" ? 10000 : 5000);
}

export function toastError(error) {
  toast(error instanceof Error ? error.message : String(error), "error");
}

function closeMenus(except) {
  for (const wrapper of document.querySelectorAll(".gear-wrap")) {
    if (wrapper !== except && wrapper.closeMenu) wrapper.closeMenu();
  }
}
document.addEventListener("click", (event) => closeMenus(event.target.closest?.(".gear-wrap")));

/** A gear menu: a button opening a list of actions. */
export function gear(label, items) {
  const menuId = uid("menu");
  const button = h("button", { type: "button", class: "icon gear", "aria-label": label, "aria-haspopup": "menu",
    "aria-expanded": "false", "aria-controls": menuId, title: label }, "⚙");
  const menu = h("ul", { class: "menu", role: "menu", id: menuId, hidden: true });
  const wrapper = h("div", { class: "gear-wrap" }, button, menu);
  const close = () => {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
  };
  for (const item of items.filter(Boolean)) {
    const entry = h("button", { type: "button", role: "menuitem", class: item.danger ? "danger-text" : "" }, item.label);
    entry.addEventListener("click", () => {
      close();
      item.action();
    });
    menu.append(h("li", { role: "none" }, entry));
  }
  button.addEventListener("click", () => {
    const opening = menu.hidden;
    closeMenus();
    menu.hidden = !opening;
    button.setAttribute("aria-expanded", String(opening));
    if (opening) menu.querySelector("button")?.focus();
  });
  menu.addEventListener("keydown", (event) => {
    const entries = [...menu.querySelectorAll("button")];
    const index = entries.indexOf(document.activeElement);
    if (event.key === "Escape") {
      close();
      button.focus();
    } else if (event.key === "ArrowDown") {
      event.preventDefault();
      entries[(index + 1) % entries.length].focus();
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      entries[(index - 1 + entries.length) % entries.length].focus();
    }
  });
  wrapper.closeMenu = close;
  return wrapper;
}

/** A table, or the empty state when there are no rows. columns: [{label, cell(row) -> Node|string}] */
export function table(columns, rows, empty, { caption, rowAttrs } = {}) {
  if (!rows.length) return h("div", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.className || "" }, c.label)))),
    h("tbody", {}, rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {},
      columns.map((c) => h("td", { class: c.className || "" }, c.cell(row))))))));
}

export function badge(status) {
  const text = String(status ?? "");
  return h("span", { class: `badge status-${text.replace(/[^a-z_]/g, "")}` }, text.replace("_", " "));
}

export function pageHeader(title, ...actions) {
  return h("div", { class: "page-header" }, h("h1", {}, title), h("div", { class: "actions" }, actions));
}

/** Keyset pagination: keeps the cursors seen so "Previous" goes back. */
export class Pager {
  constructor(load) {
    this.load = load;
    this.stack = [null];
    this.next = null;
    this.element = h("nav", { class: "pager", "aria-label": "Pagination" });
  }

  async first() {
    this.stack = [null];
    await this.show();
  }

  async reload() {
    await this.show();
  }

  async show() {
    const page = await this.load(this.stack[this.stack.length - 1]);
    this.next = page.next_cursor;
    this.render();
    return page;
  }

  render() {
    const previous = h("button", { type: "button", disabled: this.stack.length <= 1 }, "← Previous");
    const next = h("button", { type: "button", disabled: !this.next }, "Next →");
    previous.addEventListener("click", async () => {
      this.stack.pop();
      await this.show();
    });
    next.addEventListener("click", async () => {
      this.stack.push(this.next);
      await this.show();
    });
    this.element.replaceChildren(previous, h("span", { class: "page-number" }, `Page ${this.stack.length}`), next);
  }
}

export function loading(container) {
  container.replaceChildren(h("p", { class: "loading", role: "status" }, "Loading…"));
}
