// Skalds: the fleet from the skalds stream (mode, status, seconds since the last heartbeat, classes,
// task count), and one skald's page with the tasks the store gives it.

import { get, withQuery } from "../api.js";
import { fill, fmtAgo, fmtTime, h, throttle } from "../dom.js";
import { errorBox, facts, loading, pager, section, taskTable } from "../ui.js";

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
                h("td", {}, statusOf(skald)),
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
  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/skalds" }, "Skalds"), " / ", skaldId), head, section("Details", details), section("Tasks", tasks));
  let page = Number(query.get("page")) || 1;
  let skald = null;

  function renderDetails() {
    if (!skald) return;
    fill(details, 
      facts([
        ["Status", statusOf(skald)],
        ["Mode", skald.type],
        ["Last heartbeat", h("span", { class: "ago", "data-seconds": secondsSince(live, skald) ?? "" }, `${agoText(live, skald)} (${fmtTime(skald.lastHeartbeat)})`)],
        ["Heartbeat", skald.heartbeat ?? "—"],
        ["Supported classes", (skald.supportedTasks || []).join(", ")],
        ["Running tasks", String((skald.currentTasks || []).length)],
      ]),
    );
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
    if (stream === "tasks" && event.type !== "task_error" && event.type !== "task_exception") reloadTasks();
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
