// Small DOM helpers. Everything is built with createElement / textContent, never innerHTML, so
// values from the API (task names, attachments, log lines) can never become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (typeof value === "boolean") {
      if (key in el) el[key] = value; // hidden, disabled, checked, required, ...
      else if (value) el.setAttribute(key, "");
    } else if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value" && "value" in el) el.value = value;
    else el.setAttribute(key, String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("a", {href: "#/", class: "x"}, "text", otherNode) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  append(el, children); // first, so that a <select>'s value can pick one of its options
  apply(el, attrs);
  return el;
}

/** An SVG element (attributes set verbatim). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "text") el.textContent = String(value);
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Replace el's children (arrays flattened, null / false left out). */
export function fill(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

let uid = 0;
/** A document-unique id with a readable prefix. */
export function newId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

// ---- formatting ---------------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  const today = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

export function fmtAgo(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const sec = Math.max(0, Math.round(seconds));
  if (sec < 120) return `${sec} s ago`;
  if (sec < 7200) return `${Math.round(sec / 60)} min ago`;
  if (sec < 172800) return `${Math.round(sec / 3600)} h ago`;
  return `${Math.round(sec / 86400)} d ago`;
}

export function shortId(id) {
  return id && id.length > 14 ? `${id.slice(0, 12)}…` : id;
}

export const STATUSES = ["Created", "Assigning", "Running", "Paused", "Finished", "Failed", "Cancelled"];

export function statusBadge(status) {
  const cls = `badge status-${String(status || "unknown").toLowerCase()}`;
  return h("span", { class: cls, "data-status": status }, status || "unknown");
}

/** Call fn at most once per `wait` ms, at the end of a burst. */
export function debounce(fn, wait) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn(...args);
    }, wait);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** Call fn at most once per `wait` ms while calls keep coming, and once more after the last one
 * (unlike debounce, a steady stream of events cannot postpone it for ever). */
export function throttle(fn, wait) {
  let timer = null;
  let last = 0;
  const run = () => {
    timer = null;
    last = Date.now();
    fn();
  };
  const wrapped = () => {
    if (timer) return;
    timer = setTimeout(run, Math.max(0, last + wait - Date.now()));
  };
  wrapped.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  return wrapped;
}

/** A byte count for people: 512 B, 37.4 MB, 1.2 GB. */
export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function pretty(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}
