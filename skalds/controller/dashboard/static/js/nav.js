// The URL hash is the dashboard's address: "#/tasks?status=Running&page=2".

export function parseHash() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { path, query: new URLSearchParams(query) };
}

/** Change the current page's hash query; `replace` keeps history free of every keystroke. */
export function setQuery(params, { replace = false } = {}) {
  const { path } = parseHash();
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") q.set(key, value);
  }
  const text = q.toString();
  const hash = `#${path}${text ? `?${text}` : ""}`;
  if (hash === window.location.hash) return;
  if (replace) {
    window.history.replaceState(null, "", hash);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    window.location.hash = hash;
  }
}

export function go(hash) {
  window.location.hash = hash;
}
