// Overview: counts by status, the fleet, tasks running per skald, running / failed over the last
// hour, recent activity. Counts and activity are re-read when the streams report a change.

import { get, withQuery } from "../api.js";
import { fill, fmtAgo, fmtTime, h, shortId, throttle } from "../dom.js";
import { barList, lineChart } from "../charts.js";
import { errorBox, section } from "../ui.js";

const COUNTS = [
  ["Created", "createdTasks"],
  ["Assigning", "assigningTasks"],
  ["Running", "runningTasks"],
  ["Paused", "pausedTasks"],
  ["Finished", "finishedTasks"],
  ["Failed", "failedTasks"],
  ["Cancelled", "cancelledTasks"],
];

const ACTIVITY_TEXT = {
  created: "created",
  assigned: "assigned to",
  running: "started running on",
  finished: "finished on",
  failed: "failed on",
  cancelled: "was cancelled on",
  paused: "was paused on",
  resumed: "resumed on",
  retried: "was retried after running on",
  failover: "went back to dispatch from",
};

export function overviewView(main, { ctx }) {
  const { live } = ctx;
  const counts = h("div", { class: "stat-grid", id: "status-counts" });
  const fleet = h("div", { id: "fleet" });
  const perSkald = h("div", { id: "running-per-skald" });
  const timeline = h("div", { id: "timeline" });
  const activity = h("div", { id: "activity" });
  main.append(
    h("h1", {}, "Overview"),
    section("Tasks by status", counts),
    h("div", { class: "grid-2" }, section("Skalds", fleet), section("Running per skald", perSkald)),
    section("Running and failed tasks, last hour", timeline),
    section("Recent activity", activity),
  );

  async function loadSummary() {
    try {
      const summary = await get("/api/system/dashboard/summary");
      fill(counts, 
        h("a", { class: "stat stat-total", href: "#/tasks" }, h("span", { class: "stat-value" }, String(summary.totalTasks)), h("span", { class: "stat-label" }, "Total")),
        COUNTS.map(([status, key]) =>
          h(
            "a",
            { class: `stat status-${status.toLowerCase()}`, href: `#/tasks?status=${status}`, "data-status": status },
            h("span", { class: "stat-value" }, String(summary[key] ?? 0)),
            h("span", { class: "stat-label" }, status),
          ),
        ),
      );
      renderFleet(summary);
    } catch (err) {
      fill(counts, errorBox(err));
    }
  }

  let lastSummary = null;
  function renderFleet(summary) {
    if (summary) lastSummary = summary;
    const skalds = [...live.skalds.values()];
    const online = skalds.length ? skalds.filter((s) => s.status === "online").length : lastSummary?.onlineSkalds ?? 0;
    const total = skalds.length || lastSummary?.totalSkalds || 0;
    fill(fleet, 
      h(
        "div",
        { class: "stat-grid small" },
        h("a", { class: "stat status-running", href: "#/skalds" }, h("span", { class: "stat-value", id: "skalds-online" }, String(online)), h("span", { class: "stat-label" }, "Online")),
        h("a", { class: "stat status-failed", href: "#/skalds" }, h("span", { class: "stat-value", id: "skalds-offline" }, String(total - online)), h("span", { class: "stat-label" }, "Offline")),
        h("div", { class: "stat" }, h("span", { class: "stat-value" }, String(lastSummary?.nodeSkalds ?? skalds.filter((s) => s.type === "node").length)), h("span", { class: "stat-label" }, "Node")),
        h("div", { class: "stat" }, h("span", { class: "stat-value" }, String(lastSummary?.edgeSkalds ?? skalds.filter((s) => s.type === "edge").length)), h("span", { class: "stat-label" }, "Edge")),
      ),
    );
    const rows = skalds
      .filter((s) => s.status === "online" || (s.currentTasks || []).length)
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((s) => ({ label: s.id, value: (s.currentTasks || []).length, href: `#/skalds/${encodeURIComponent(s.id)}` }));
    fill(perSkald, barList(rows, { label: "Tasks running per skald", empty: "No skald online." }));
  }

  async function loadTimeline() {
    try {
      const data = await get(withQuery("/api/system/timeline", { minutes: 60 }));
      const points = data.points || [];
      const now = live.now();
      const chart = lineChart(
        [
          { name: "Running", cls: "s-running", points: points.map((p) => ({ x: p.timestamp, y: p.running })) },
          { name: "Failed", cls: "s-failed", points: points.map((p) => ({ x: p.timestamp, y: p.failed })) },
        ],
        { label: `Running and failed tasks over the last hour; now ${points.length ? points[points.length - 1].running : 0} running`, xFrom: now - 3600_000, xTo: now, height: 180 },
      );
      fill(timeline, chart);
    } catch (err) {
      fill(timeline, err.noRoute ? h("p", { class: "muted" }, "No timeline data (this controller does not record one).") : errorBox(err));
    }
  }

  async function loadActivity() {
    try {
      const data = await get(withQuery("/api/system/activity", { limit: 30 }));
      const items = data.items || [];
      if (!items.length) {
        fill(activity, h("p", { class: "muted" }, "Nothing has happened yet."));
        return;
      }
      fill(activity, 
        h(
          "ol",
          { class: "activity" },
          items.map((item) =>
            h(
              "li",
              { class: `activity-item kind-${item.kind}` },
              h("time", { datetime: new Date(item.timestamp).toISOString(), title: fmtAgo((live.now() - item.timestamp) / 1000) }, fmtTime(item.timestamp)),
              h("span", { class: `kind kind-${item.kind}` }, item.kind),
              h(
                "span",
                { class: "what" },
                h("a", { href: `#/tasks/${encodeURIComponent(item.taskId)}`, title: item.taskId }, item.name || shortId(item.taskId)),
                item.className ? ` (${item.className})` : "",
                ` ${(ACTIVITY_TEXT[item.kind] || item.kind).replace(/ (on|to|from)$/, item.executor ? " $1" : "")}`,
                item.executor ? [" ", h("a", { href: `#/skalds/${encodeURIComponent(item.executor)}` }, item.executor)] : "",
                item.detail ? h("span", { class: "detail" }, ` — ${item.detail}`) : "",
              ),
            ),
          ),
        ),
      );
    } catch (err) {
      fill(activity, err.noRoute ? h("p", { class: "muted" }, "No activity data (this controller does not record it).") : errorBox(err));
    }
  }

  const refreshCounts = throttle(() => {
    loadSummary();
    loadActivity();
  }, 500);
  const refreshTimeline = throttle(loadTimeline, 5000);
  const off = live.on((event, stream) => {
    if (event.type === "snapshot" || event.type === "skald_status" || event.type === "skald_heartbeat") renderFleet();
    if (["task_status", "task_deleted", "skald_status"].includes(event.type) || (event.type === "snapshot" && stream === "tasks")) {
      refreshCounts();
      refreshTimeline();
    }
  });
  const timer = setInterval(loadTimeline, 30_000);
  loadSummary();
  loadTimeline();
  loadActivity();

  return {
    destroy() {
      off();
      clearInterval(timer);
      refreshCounts.cancel();
      refreshTimeline.cancel();
    },
  };
}
