// The dashboard's entry point: checks the session, opens the live streams, routes by URL hash.
//   #/             overview           #/skalds         skalds list     #/skalds/<id>   one skald
//   #/tasks?...    tasks list         #/tasks/<id>     one task        #/new           create a task

import { get, post, toLogin } from "./api.js";
import { clear, fill, h } from "./dom.js";
import { Live } from "./live.js";
import { parseHash } from "./nav.js";
import { errorBox } from "./ui.js";
import { createView } from "./views/create.js";
import { overviewView } from "./views/overview.js";
import { skaldView, skaldsView } from "./views/skalds.js";
import { taskView } from "./views/task.js";
import { tasksView } from "./views/tasks.js";

const routes = [
  { name: "overview", re: /^\/?$/, view: overviewView, nav: "#/", title: () => "Overview" },
  { name: "skalds", re: /^\/skalds$/, view: skaldsView, nav: "#/skalds", title: () => "Skalds" },
  { name: "skald", re: /^\/skalds\/(.+)$/, view: skaldView, nav: "#/skalds", title: (id) => `Skald ${id}` },
  { name: "tasks", re: /^\/tasks$/, view: tasksView, nav: "#/tasks", title: () => "Tasks" },
  { name: "task", re: /^\/tasks\/(.+)$/, view: taskView, nav: "#/tasks", title: (id) => `Task ${id}` },
  { name: "new", re: /^\/new$/, view: createView, nav: "#/new", title: () => "New task" },
];

const ctx = { live: new Live(), session: null };
let current = null; // {route, key, handle}
let rendered = false;

function render() {
  const { path, query } = parseHash();
  const main = document.getElementById("main");
  const route = routes.find((r) => r.re.test(path));
  for (const link of document.querySelectorAll("#nav a")) {
    if (route && link.getAttribute("href") === route.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!route) {
    if (current && current.handle && current.handle.destroy) current.handle.destroy();
    current = null;
    fill(main, h("h1", {}, "Not found"), errorBox(`No page at #${path}`), h("p", {}, h("a", { href: "#/" }, "Back to the overview")));
    return;
  }
  const param = (path.match(route.re) || [])[1];
  const key = `${route.name}:${param || ""}`;
  if (current && current.key === key && current.handle && current.handle.update) {
    current.handle.update(query); // same page, new filters: keep focus and state
    return;
  }
  if (current && current.handle && current.handle.destroy) current.handle.destroy();
  clear(main);
  let decoded = param;
  try {
    decoded = param ? decodeURIComponent(param) : undefined;
  } catch {
    /* a malformed %-escape: use it as typed */
  }
  document.title = `${route.title(decoded)} · Skalds`;
  const handle = route.view(main, { param: decoded, query, ctx });
  current = { route, key, handle };
  if (rendered && (!handle || !handle.keepFocus)) main.focus({ preventScroll: true }); // after navigation, not on load
  rendered = true;
  window.scrollTo(0, 0);
}

function showConnection(state) {
  const el = document.getElementById("conn");
  const labels = { live: "Live", reconnecting: "Connecting…", offline: "Offline" };
  el.dataset.state = state;
  el.textContent = labels[state] || state;
}

async function main() {
  let session;
  try {
    session = await get("/api/auth/session");
  } catch (err) {
    clear(document.getElementById("main")).append(h("h1", {}, "Dashboard"), errorBox(err));
    return;
  }
  if (session.auth === "token" && !session.authenticated) {
    toLogin();
    return;
  }
  ctx.session = session;
  document.body.classList.add("ready");
  const logout = document.getElementById("logout");
  if (session.auth === "token") {
    logout.hidden = false;
    logout.addEventListener("click", async () => {
      try {
        await post("/api/auth/logout");
      } finally {
        window.location.assign("/dashboard/login");
      }
    });
  }
  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault(); // "#main" would be a route
    document.getElementById("main").focus();
  });
  ctx.live.onState(showConnection);
  ctx.live.start();
  window.addEventListener("hashchange", render);
  render();
}

main();
