// Skalds: the fleet from the skalds stream (mode, status, seconds since the last heartbeat, classes,
// task count), and one skald's page with the tasks the store gives it and, for a node, cordon /
// drain / uncordon (confirmed first).

import { get, put, withQuery } from "../api.js";
import { fill, fmtAgo, fmtTime, h, throttle } from "../dom.js";
import { confirmAction, errorBox, facts, loading, notify, pager, section, taskTable } from "../ui.js";

const SCHEDULE_ACTIONS = [
  { label: "Cordon", body: { cordoned: true }, when: (s) => !s.cordoned, text: "No new tasks are dispatched to it; the tasks it runs keep running." },
  { label: "Drain", body: { cordoned: true, drain: true }, when: (s) => !s.draining, text: "No new tasks are dispatched to it, and its tasks move to other nodes: each stops here, then starts on another node.", danger: true },
  { label: "Uncordon", body: { cordoned: false }, when: (s) => s.cordoned, text: "The dispatcher gives it tasks again." },
];

// "gpu 1 / 2 (1 free)" per resource the skald declares or uses.
function resourcesOf(skald) {
  const declared = skald.resources || {};
  const used = skald.resourcesUsed || {};
  const free = skald.resourcesFree || {};
  const kinds = [...new Set([...Object.keys(declared), ...Object.keys(used)])].sort();
  return kinds.map((k) => `${k} ${used[k] ?? 0} / ${declared[k] ?? 0} (${free[k] ?? declared[k] ?? 0} free)`).join(", ") || "—";
}

function schedulingOf(skald) {
  if (skald.draining) return h("span", { class: "badge", "data-scheduling": "draining" }, "draining");
  if (skald.cordoned) return h("span", { class: "badge", "data-scheduling": "cordoned" }, "cordoned");
  return "schedulable";
}

function statusOf(skald) {
  return h("span", { class: `badge skald-${skald.status}`, "data-status": skald.status }, skald.status);
}

function agoText(live, skald) {
  return skald.lastHeartbeat ? fmtAgo((live.now() - skald.lastHeartbeat) / 1000) : "never";
}

function secondsSince(live, skald) {
  return skald.lastHeartbeat ? Math.max(0, Math.round((live.now() - skald.lastHeartbeat) / 1000)) : null;
}

export function skaldsView(main, { ctx }) {
  const { live } = ctx;
  const body = h("div", {}, loading());
  main.append(h("h1", {}, "Skalds"), section("Fleet", body));
  let seen = false;

  function render() {
    const skalds = [...live.skalds.values()].sort((a, b) => (a.status === b.status ? a.id.localeCompare(b.id) : a.status === "online" ? -1 : 1));
    if (!skalds.length) {
      fill(body, h("p", { class: "muted empty" }, seen ? "No skald has registered." : "Loading…"));
      return;
    }
    fill(body, 
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "skalds" },
          h("caption", { class: "sr-only" }, "Skalds"),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "Skald"),
              h("th", { scope: "col" }, "Mode"),
              h("th", { scope: "col" }, "Status"),
              h("th", { scope: "col", class: "num" }, "Last heartbeat"),
              h("th", { scope: "col", class: "opt" }, "Classes"),
              h("th", { scope: "col", class: "num" }, "Tasks"),
            ),
          ),
          h(
            "tbody",
            {},
            skalds.map((skald) =>
              h(
                "tr",
                { "data-skald-id": skald.id },
                h("td", {}, h("a", { href: `#/skalds/${encodeURIComponent(skald.id)}` }, skald.id)),
                h("td", {}, skald.type || "—"),
                h("td", {}, statusOf(skald), skald.cordoned ? [" ", schedulingOf(skald)] : null),
                h("td", { class: "num ago", "data-last": skald.lastHeartbeat ?? "", title: fmtTime(skald.lastHeartbeat) }, agoText(live, skald)),
                h("td", { class: "opt classes" }, (skald.supportedTasks || []).join(", ") || "—"),
                h("td", { class: "num" }, String(skald.taskCount ?? (skald.currentTasks || []).length)),
              ),
            ),
          ),
        ),
      ),
    );
  }

  const off = live.on((event, stream) => {
    if (stream !== "skalds") return;
    seen = true;
    render();
  });
  // The stream's snapshot may have arrived before this page opened; read once as well.
  get("/api/skalds")
    .then((data) => {
      seen = true;
      if (!live.skalds.size) for (const item of data.items || []) live.skalds.set(item.id, item);
      render();
    })
    .catch((err) => fill(body, errorBox(err)));
  render();
  const tick = setInterval(() => {
    for (const cell of body.querySelectorAll("td.ago")) {
      const last = Number(cell.dataset.last);
      cell.textContent = last ? fmtAgo((live.now() - last) / 1000) : "never";
    }
  }, 1000);
  return {
    destroy() {
      off();
      clearInterval(tick);
    },
  };
}

export function skaldView(main, { param: skaldId, query, ctx }) {
  const { live } = ctx;
  const head = h("h1", {}, `Skald ${skaldId}`);
  const details = h("div", {}, loading());
  const tasks = h("div", {}, loading());
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Skald actions" });
  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/skalds" }, "Skalds"), " / ", skaldId), head, actions, section("Details", details), section("Tasks", tasks));
  let page = Number(query.get("page")) || 1;
  let skald = null;
  let actionsShown = null;

  function renderDetails() {
    if (!skald) return;
    fill(details, 
      facts([
        ["Status", statusOf(skald)],
        ["Mode", skald.type],
        ["Last heartbeat", h("span", { class: "ago", "data-seconds": secondsSince(live, skald) ?? "" }, `${agoText(live, skald)} (${fmtTime(skald.lastHeartbeat)})`)],
        ["Heartbeat", skald.heartbeat ?? "—"],
        ["Scheduling", skald.type === "node" ? schedulingOf(skald) : "—"],
        ["Cordoned since", skald.cordonedSince ? fmtTime(skald.cordonedSince) : null],
        ["Supported classes", (skald.supportedTasks || []).join(", ")],
        ["Running tasks", String((skald.currentTasks || []).length)],
        ["Labels", Object.entries(skald.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "—"],
        ["Resources (used / declared, free)", resourcesOf(skald)],
      ]),
    );
    // Rebuilt only when they change (details are redrawn every second; a button keeps its focus).
    const shown = `${skald.type}:${Boolean(skald.cordoned)}:${Boolean(skald.draining)}`;
    if (shown === actionsShown) return;
    actionsShown = shown;
    fill(actions,
      skald.type === "node"
        ? SCHEDULE_ACTIONS.filter((a) => a.when(skald)).map((a) =>
            h("button", { type: "button", class: a.danger ? "danger" : "", "data-action": a.label.toLowerCase(), onclick: () => schedule(a) }, `${a.label} skald`),
          )
        : [],
    );
  }

  async function schedule(action) {
    const ok = await confirmAction({ title: `${action.label} skald ${skaldId}?`, text: action.text, confirm: `${action.label} skald`, danger: action.danger });
    if (!ok) return;
    try {
      const item = await put(`/api/skalds/${encodeURIComponent(skaldId)}/schedulable`, action.body);
      skald = { ...skald, ...item };
      live.skalds.set(skaldId, skald);
      const moved = (item.drained || []).length;
      notify(`${action.label}: ${skaldId} is ${item.draining ? "draining" : item.cordoned ? "cordoned" : "schedulable"}` + (moved ? `; ${moved} task(s) moved` : ""));
      renderDetails();
      loadTasks();
    } catch (err) {
      notify(err.message, "error");
    }
  }

  async function loadSkald() {
    try {
      skald = live.skalds.get(skaldId) || (await get(`/api/skalds/${encodeURIComponent(skaldId)}`));
      renderDetails();
    } catch (err) {
      fill(details, errorBox(err));
    }
  }

  async function loadTasks() {
    try {
      const data = await get(withQuery(`/api/skalds/${encodeURIComponent(skaldId)}/tasks`, { page, pageSize: 20 }));
      fill(tasks, 
        taskTable(data.items || [], { caption: `Tasks of ${skaldId}`, showExecutor: false }),
        pager({
          page: data.page,
          pageSize: data.pageSize,
          total: data.total,
          onPage: (p) => {
            page = p;
            loadTasks();
          },
        }),
      );
    } catch (err) {
      fill(tasks, errorBox(err));
    }
  }

  const reloadTasks = throttle(loadTasks, 500);
  const off = live.on((event, stream) => {
    if (stream === "skalds" && (event.type === "snapshot" || event.skaldId === skaldId)) {
      skald = live.skalds.get(skaldId) || skald;
      renderDetails();
    }
    if (stream === "tasks" && !["task_error", "task_exception", "task_placement"].includes(event.type)) reloadTasks();
  });
  const tick = setInterval(renderDetails, 1000);
  loadSkald();
  loadTasks();
  return {
    destroy() {
      off();
      clearInterval(tick);
      reloadTasks.cancel();
    },
  };
}
