// The controller's REST API, as the dashboard uses it. Requests carry the HttpOnly skalds_token
// cookie (same origin); a 401 means the token is missing or stale, so the browser goes to login.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = Array.isArray(details) ? details : [];
  }

  /** True when the route itself does not exist (an older controller), not the resource. */
  get noRoute() {
    return this.status === 404 && /^no route /.test(this.message);
  }
}

export function toLogin() {
  const next = window.location.hash || "";
  window.location.assign(`/dashboard/login${next}`);
}

export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network_error", `cannot reach the controller (${err.message})`);
  }
  if (response.status === 204) return null;
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const err = new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `${method} ${path} failed with HTTP ${response.status}`,
      error.details,
    );
    if (response.status === 401 && !path.startsWith("/api/auth/")) toLogin();
    throw err;
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const put = (path, body) => api("PUT", path, body);

/** "/api/tasks" + {a: 1, b: ""} -> "/api/tasks?a=1" (empty values left out). */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") q.set(key, String(value));
  }
  const text = q.toString();
  return text ? `${path}?${text}` : path;
}

export const enc = encodeURIComponent;
