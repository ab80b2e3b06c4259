// Tasks: the list with filters (status, class, executor), search by id / name and pagination, all
// kept in the URL hash. The page is re-read when the tasks stream reports a status change; a
// deleted task's row is dropped as soon as its task_deleted arrives, and a waiting task's
// "waiting: <why>" follows its task_placement events.

import { get, post, withQuery } from "../api.js";
import { STATUSES, debounce, fill, h, throttle } from "../dom.js";
import { setQuery } from "../nav.js";
import { confirmAction, errorBox, loading, notify, pager, section, setPlacementHint, taskTable } from "../ui.js";

const PAGE_SIZES = [10, 20, 50, 100];
// What "Act on matching tasks" offers (POST /api/tasks/bulk, previewed with a dry run first).
const BULK = [
  { action: "pause", label: "Pause", done: "paused" },
  { action: "resume", label: "Resume", done: "resumed" },
  { action: "cancel", label: "Cancel", done: "cancelled" },
  { action: "delete", label: "Delete", done: "deleted" },
];

function readQuery(query) {
  return {
    status: query.get("status") || "",
    type: query.get("type") || "",
    executor: query.get("executor") || "",
    q: query.get("q") || "",
    page: Math.max(1, Number(query.get("page")) || 1),
    pageSize: Math.min(100, Math.max(1, Math.floor(Number(query.get("pageSize"))) || 20)),
  };
}

function labelled(id, text, control) {
  return h("div", { class: "filter" }, h("label", { for: id }, text), control);
}

export function tasksView(main, { query, ctx }) {
  const { live } = ctx;
  let filters = readQuery(query);
  const status = h("select", { id: "filter-status", name: "status" }, h("option", { value: "" }, "Any status"), STATUSES.map((s) => h("option", { value: s }, s)));
  const type = h("select", { id: "filter-class", name: "type" }, h("option", { value: "" }, "Any class"));
  const executor = h("select", { id: "filter-executor", name: "executor" }, h("option", { value: "" }, "Any skald"));
  const search = h("input", { type: "search", id: "filter-q", name: "q", placeholder: "id or name", autocomplete: "off" });
  const size = h("select", { id: "filter-size", name: "pageSize" }, PAGE_SIZES.map((n) => h("option", { value: String(n) }, String(n))));
  const clearButton = h("button", { type: "reset" }, "Clear filters");
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter tasks" },
    labelled("filter-q", "Search", search),
    labelled("filter-status", "Status", status),
    labelled("filter-class", "Class", type),
    labelled("filter-executor", "Executor", executor),
    labelled("filter-size", "Per page", size),
    h("div", { class: "filter filter-actions" }, clearButton),
  );
  const results = h("div", { "aria-live": "polite", "aria-busy": "true" }, loading());
  const bulkAction = h("select", { id: "bulk-action", name: "action" }, BULK.map((b) => h("option", { value: b.action }, b.label)));
  const bulkButton = h("button", { type: "submit", class: "danger" }, "Apply to matching tasks…");
  const bulkForm = h(
    "form",
    { class: "filters", id: "bulk-form", "aria-label": "Act on the tasks the filters match" },
    h("div", { class: "filter" }, h("label", { for: "bulk-action" }, "Action"), bulkAction),
    h("div", { class: "filter filter-actions" }, bulkButton),
  );
  bulkForm.addEventListener("submit", (e) => {
    e.preventDefault();
    bulk();
  });
  main.append(h("div", { class: "title-row" }, h("h1", {}, "Tasks"), h("a", { class: "button primary", href: "#/new" }, "New task")), section("Filters", form), section("Act on matching tasks", bulkForm), section("Results", results));

  // Every task the filters match (all pages, at most 1,000), after a dry run says how many and a confirmation.
  async function bulk() {
    const choice = BULK.find((b) => b.action === bulkAction.value);
    const filter = {};
    for (const key of ["status", "type", "executor", "q"]) if (filters[key]) filter[key] = filters[key];
    if (!Object.keys(filter).length) {
      notify("Choose a filter first (search, status, class or executor): a bulk action never applies to every task.", "error");
      return;
    }
    bulkButton.disabled = true;
    try {
      const preview = await post("/api/tasks/bulk", { action: choice.action, filter, dryRun: true });
      if (!preview.done) {
        notify(`${choice.label}: none of the ${preview.matched} matching task(s) can be ${choice.done}.`);
        return;
      }
      const skipped = preview.skipped ? `, ${preview.skipped} skipped (the action does not apply to them)` : "";
      const ok = await confirmAction({
        title: `${choice.label} ${preview.done} task(s)?`,
        text: `The filters match ${preview.matched} task(s): ${preview.done} will be ${choice.done}${skipped}.`,
        confirm: `${choice.label} ${preview.done} task(s)`,
        danger: true,
      });
      if (!ok) return;
      const result = await post("/api/tasks/bulk", { action: choice.action, filter });
      const failed = result.failed ? `, ${result.failed} failed` : "";
      notify(`${choice.label}: ${result.done} ${choice.done}, ${result.skipped} skipped${failed}`, result.failed ? "error" : "info");
      load();
    } catch (err) {
      notify(err.message, "error");
    } finally {
      bulkButton.disabled = false;
    }
  }

  function ensureOption(select, value) {
    if (value && ![...select.options].some((o) => o.value === value)) select.append(h("option", { value }, value));
  }

  function syncControls() {
    ensureOption(type, filters.type);
    ensureOption(executor, filters.executor);
    status.value = filters.status;
    type.value = filters.type;
    executor.value = filters.executor;
    ensureOption(size, String(filters.pageSize)); // any size from the address (1-100) is kept
    size.value = String(filters.pageSize);
    if (document.activeElement !== search) search.value = filters.q;
  }

  function push(changes, replace = false) {
    const next = { ...filters, ...changes };
    if (!("page" in changes)) next.page = 1; // a new filter starts at the first page
    setQuery({ ...next, page: next.page > 1 ? next.page : "", pageSize: next.pageSize !== 20 ? next.pageSize : "" }, { replace });
  }

  for (const select of [status, type, executor, size]) {
    select.addEventListener("change", () => push({ [select.name]: select.name === "pageSize" ? Number(select.value) : select.value }));
  }
  const searchLater = debounce(() => push({ q: search.value.trim() }, true), 300);
  search.addEventListener("input", searchLater);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    searchLater.cancel();
    push({ q: search.value.trim() });
  });
  form.addEventListener("reset", (e) => {
    e.preventDefault();
    search.value = "";
    setQuery({});
  });

  let generation = 0;
  async function load() {
    const mine = ++generation;
    results.setAttribute("aria-busy", "true");
    try {
      const data = await get(
        withQuery("/api/tasks", {
          page: filters.page,
          pageSize: filters.pageSize,
          status: filters.status,
          type: filters.type,
          executor: filters.executor,
          q: filters.q,
          order: "-createDateTime", // newest first
        }),
      );
      if (mine !== generation) return;
      const pages = Math.max(1, Math.ceil(data.total / data.pageSize));
      if (filters.page > pages && data.total > 0) {
        push({ page: pages }, true);
        return;
      }
      fill(results, 
        taskTable(data.items || [], { caption: "Tasks" }),
        pager({ page: data.page, pageSize: data.pageSize, total: data.total, onPage: (p) => push({ page: p }) }),
      );
    } catch (err) {
      if (mine === generation) fill(results, errorBox(err));
    } finally {
      if (mine === generation) results.setAttribute("aria-busy", "false");
    }
  }

  async function loadChoices() {
    try {
      const classes = await get("/api/tasks/classes");
      for (const c of classes.items || []) ensureOption(type, c.className);
    } catch {
      /* the class filter still takes the URL's value */
    }
    fillExecutors();
    syncControls();
  }

  function fillExecutors() {
    for (const id of [...live.skalds.keys()].sort()) ensureOption(executor, id);
  }

  const reload = throttle(load, 500);
  const off = live.on((event, stream) => {
    if (stream === "skalds") {
      fillExecutors();
      return;
    }
    if (event.type === "task_deleted") dropRow(event.taskId);
    if (event.type === "task_placement") {
      // Why a waiting task fits on no node changed: its row says so at once, no re-read (a status
      // change comes as its own task_status and re-reads the page).
      const row = findRow(event.taskId);
      const data = event.data || {};
      if (row) setPlacementHint(row, data.lifecycleStatus === "Created" ? data.placement : null);
    }
    if (event.type === "task_status" || event.type === "task_deleted" || event.type === "snapshot") reload();
  });

  function findRow(taskId) {
    return [...results.querySelectorAll("tr[data-task-id]")].find((tr) => tr.dataset.taskId === taskId);
  }

  // A deleted task's row goes at once; the re-read that follows fills the page up again.
  function dropRow(taskId) {
    const row = findRow(taskId);
    if (!row) return;
    const body = row.parentElement;
    row.remove();
    if (body && !body.querySelector("tr")) fill(results, h("p", { class: "muted empty" }, "No tasks."));
  }

  syncControls();
  loadChoices();
  load();
  return {
    keepFocus: false,
    update(newQuery) {
      filters = readQuery(newQuery);
      syncControls();
      load();
    },
    destroy() {
      off();
      reload.cancel();
      searchLater.cancel();
    },
  };
}
