// The console's shell: sign-in, navigation by the URL fragment, one page at a time.
import { api, ApiError, session, whenUnauthorized } from "./api.js";
import { h } from "./dom.js";
import { field, onSubmit, FormProblem, toast } from "./ui.js";

const COMPANY_PAGES = [
  ["dashboard", "Dashboard", () => import("./pages/dashboard.js")],
  ["configurations", "Delivery configurations", () => import("./pages/configurations.js")],
  ["subscriptions", "Subscriptions", () => import("./pages/subscriptions.js")],
  ["events", "Event viewer", () => import("./pages/events.js")],
  ["search", "Event search", () => import("./pages/search.js")],
  ["buffer-files", "Buffer files", () => import("./pages/buffer-files.js")],
  ["numbers", "Monitored numbers", () => import("./pages/numbers.js")],
  ["topics", "Topic info", () => import("./pages/topics.js")],
];
const OPERATOR_PAGES = [
  ["companies", "Companies", () => import("./pages/companies.js")],
  ["applications", "Applications", () => import("./pages/applications.js")],
  ["sources", "Sources", () => import("./pages/sources.js")],
  ["dead-letters", "Dead letters", () => import("./pages/dead-letters.js")],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOutButton = document.getElementById("sign-out");
let cleanup = null;
let rendering = 0;

function pages() {
  return session.role === "operator" ? OPERATOR_PAGES : COMPANY_PAGES;
}

/** "#/search?status=failed" -> ["search", URLSearchParams] */
export function currentRoute() {
  const fragment = window.location.hash.replace(/^#\/?/, "");
  const [name, query] = fragment.split("?");
  return [name, new URLSearchParams(query || "")];
}

export function navigate(name, params) {
  const query = params ? `?${new URLSearchParams(params)}` : "";
  window.location.hash = `#/${name}${query}`;
}

function renderNav(active) {
  nav.replaceChildren(h("ul", {}, pages().map(([name, label]) => h("li", {},
    h("a", { href: `#/${name}`, "aria-current": name === active ? "page" : null }, label)))));
}

async function route() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  for (const dialog of document.querySelectorAll("dialog")) dialog.close();
  if (!session.token) {
    renderSignIn();
    return;
  }
  const available = pages();
  let [name, params] = currentRoute();
  let entry = available.find(([pageName]) => pageName === name);
  if (!entry) {
    [entry] = available;
    name = entry[0];
    history.replaceState(null, "", `#/${name}`);
    params = new URLSearchParams();
  }
  renderNav(name);
  who.textContent = session.role === "operator" ? "Operator" : "Company";
  signOutButton.hidden = false;
  document.title = `${entry[1]} · Event Manager`;
  const ticket = ++rendering;
  const module = await entry[2]();
  if (ticket !== rendering) return;
  main.replaceChildren();
  try {
    cleanup = (await module.render(main, { params, navigate })) || null;
  } catch (error) {
    main.append(h("div", { class: "form-error", role: "alert" }, error.message || String(error)));
  }
  main.focus({ preventScroll: true });
}

function renderSignIn(message) {
  nav.replaceChildren();
  who.textContent = "";
  signOutButton.hidden = true;
  document.title = "Sign in · Event Manager";
  const credential = h("input", { type: "password", name: "credential", autocomplete: "off", required: true,
    spellcheck: "false" });
  const form = h("form", { class: "card sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in to Event Manager"),
    message ? h("p", { class: "notice", role: "status" }, message) : null,
    field("API key or operator token", credential, {
      path: "credential",
      hint: "A company application's API key (emk_…) opens the company console; the operator token opens the operator pages. It is kept in this browser tab only, until you sign out or close the tab.",
    }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Sign in")));
  onSubmit(form, async (data) => {
    const token = String(data.get("credential") || "").trim();
    if (!token) throw new FormProblem(["credential"], "paste an API key or the operator token");
    const role = token.startsWith("emk_") ? "company" : "operator";
    try {
      await api("GET", role === "company" ? "/v1/topics" : "/v1/admin/companies", { token });
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        const why = error.status === 403 ? error.message : `this ${role === "company" ? "API key" : "operator token"} is not accepted`;
        throw new FormProblem(["credential"], why);
      }
      throw error;
    }
    session.signIn(token, role);
    toast(role === "company" ? "Signed in." : "Signed in as operator.");
    if (window.location.hash) route();
    else navigate(pages()[0][0]);
  });
  main.replaceChildren(form);
  credential.focus();
}

export function signOut(message) {
  session.signOut();
  history.replaceState(null, "", window.location.pathname);
  renderSignIn(message);
}

signOutButton.addEventListener("click", () => signOut("You have signed out."));
whenUnauthorized(() => signOut("Your credential is no longer accepted (revoked or rotated). Sign in again."));
window.addEventListener("hashchange", route);
window.addEventListener("error", (event) => toast(`Unexpected error: ${event.message}`, "error"));
route();
