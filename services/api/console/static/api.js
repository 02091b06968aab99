// The console's only way to the server: the public REST API. The key (or operator token) is sent
// once, to POST /v1/console/session; from then on the browser holds an HttpOnly, SameSite=Strict
// session cookie that no script can read, and every change carries the session's CSRF token in
// X-CSRF-Token. Nothing is kept in localStorage, sessionStorage or a URL; the CSRF token and who
// is signed in live in this module's memory and are read again from GET /v1/console/session.

const SESSION = "/v1/console/session";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
let current = null; // {role, company_id, application_id, csrf_token, expires_at, idle_expires_at}

export const session = {
  get signedIn() {
    return current !== null;
  },
  get role() {
    return current?.role ?? null;
  },
  /** Who the cookie signs in, asked of the server: null (204) without a live session. */
  async load() {
    current = await api("GET", SESSION, { quiet: true });
    return current;
  },
  /** Sends the credential once; the answer sets the cookie. Throws ApiError (401/403 name `credential`). */
  async signIn(credential) {
    current = await api("POST", SESSION, { body: { credential }, quiet: true });
    return current;
  },
  /** Ends the session on the server (a copy of the cookie stops working) and forgets it here. */
  async signOut() {
    const wasSignedIn = current !== null;
    try {
      if (wasSignedIn) await api("DELETE", SESSION, { quiet: true });
    } finally {
      current = null;
    }
  },
  forget() {
    current = null;
  },
};

/** An API answer other than 2xx, with its problem+json body (`detail`, `errors: [{loc, msg}]`). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

function url(path, query) {
  const target = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") target.searchParams.set(key, value);
  }
  return target;
}

/** api("POST", "/v1/subscriptions", {body}) -> parsed JSON (null for 204); throws ApiError.
 * A 401 ends the console's session (it was signed out, timed out, or its key was disabled or rotated). */
export async function api(method, path, { body, query, raw = false, quiet = false } = {}) {
  const headers = { accept: "application/json, application/problem+json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (!SAFE.has(method) && current) headers["x-csrf-token"] = current.csrf_token;
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, { title: "Network error", detail: `the API did not answer (${error.message})` });
  }
  if (!response.ok) {
    let problem;
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText, detail: `HTTP ${response.status}` };
    }
    const error = new ApiError(response.status, problem || {});
    if (response.status === 401 && !quiet && current) {
      current = null;
      onUnauthorized(error);
    }
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body) => api("POST", path, { body });
export const patch = (path, body) => api("PATCH", path, { body });
export const del = (path, body) => api("DELETE", path, { body });

/** Every item of a cursor-paginated listing, up to `max` items. */
export async function collect(path, query, max = 10000) {
  const items = [];
  let cursor = null;
  do {
    const page = await get(path, { ...query, cursor });
    items.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return { items, more: Boolean(cursor) };
}
