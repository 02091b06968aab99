// The operator API has no listing of applications yet, so the console remembers the
// ones created in this tab (ids and names only, never keys) to act on them again.
const KEY = "em.console.known";

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || { applications: [], sources: [] };
  } catch {
    return { applications: [], sources: [] };
  }
}

export function known(kind) {
  return load()[kind];
}

export function remember(kind, item) {
  const all = load();
  all[kind] = [item, ...all[kind].filter((other) => other.id !== item.id)].slice(0, 200);
  sessionStorage.setItem(KEY, JSON.stringify(all));
}
