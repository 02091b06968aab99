// The console's shell: sign-in (a session cookie, see api.js), navigation by the URL fragment, one
// page at a time.
import { ApiError, session, whenUnauthorized } from "./api.js";
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
  ["api-keys", "API keys", () => import("./pages/api-keys.js")],
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
  if (!session.signedIn) {
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
      hint: "A company application's API key (emk_…) opens the company console; the operator token opens the operator pages. It is sent once: this browser then keeps only a session cookie that scripts cannot read, until you sign out, after 8 hours without use, or after 12 hours.",
    }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Sign in")));
  onSubmit(form, async (data) => {
    const token = String(data.get("credential") || "").trim();
    if (!token) throw new FormProblem(["credential"], "paste an API key or the operator token");
    const kind = token.startsWith("emk_") ? "API key" : "operator token";
    let signedIn;
    try {
      signedIn = await session.signIn(token);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        const why = error.status === 403 ? error.message : `this ${kind} is not accepted`;
        throw new FormProblem(["credential"], why);
      }
      throw error;
    }
    credential.value = "";
    toast(signedIn.role === "company" ? "Signed in." : "Signed in as operator.");
    if (window.location.hash) route();
    else navigate(pages()[0][0]);
  });
  main.replaceChildren(form);
  credential.focus();
}

function showSignIn(message) {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  history.replaceState(null, "", window.location.pathname);
  renderSignIn(message);
}

export async function signOut(message) {
  try {
    await session.signOut();
  } catch (error) {
    toast(`Signing out failed: ${error.message}`, "error");
    return;
  }
  showSignIn(message);
}

signOutButton.addEventListener("click", () => signOut("You have signed out."));
whenUnauthorized((error) => showSignIn(`Your session has ended (${error.message}).`));
window.addEventListener("hashchange", route);
window.addEventListener("error", (event) => toast(`Unexpected error: ${event.message}`, "error"));

async function start() {
  // A console link that could not be used (opened before, expired) lands here with ?link=expired.
  const linkExpired = new URLSearchParams(window.location.search).get("link") === "expired";
  if (linkExpired) history.replaceState(null, "", window.location.pathname + window.location.hash);
  try {
    await session.load();
  } catch (error) {
    renderSignIn(`The API did not answer (${error.message}).`);
    return;
  }
  if (!session.signedIn && linkExpired) {
    renderSignIn("This console link was already used or has expired. Ask for a new one, or sign in with an API key.");
    return;
  }
  route();
}
start();
