// The console's only way to the server: the public REST API with `Authorization: Bearer`.
// The credential lives in sessionStorage (this tab, until it closes or signs out), never in a
// URL, a cookie or the console's logs.

const TOKEN = "em.console.credential";
const ROLE = "em.console.role";

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN);
  },
  get role() {
    return sessionStorage.getItem(ROLE);
  },
  signIn(token, role) {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(ROLE, role);
  },
  signOut() {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(ROLE);
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

/** api("POST", "/v1/subscriptions", {body}) -> parsed JSON (null for 204); throws ApiError. */
export async function api(method, path, { body, query, raw = false, token = session.token } = {}) {
  const headers = { accept: "application/json, application/problem+json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
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
    if (response.status === 401 && token === session.token && session.token) onUnauthorized(error);
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
