// One task: fields, actions (pause / resume / retry / cancel / delete, confirmed first), attachments with a
// hot-update form, status history, heartbeat chart, last exception, and its log lines tailing live.
// A waiting task shows why it fits on no node (its `placement`), re-read when the stream says it changed
// (task_placement) or its requirements changed (task_requirements); "Edit placement" changes them.

import { api, get, put, withQuery } from "../api.js";
import { lineChart } from "../charts.js";
import { clear, fill, throttle, fmtBytes, fmtTime, h, pretty, statusBadge } from "../dom.js";
import { clearErrors, schemaFields, showErrors, showRefusal } from "../form.js";
import { watchTask } from "../live.js";
import { go } from "../nav.js";
import { confirmAction, errorBox, facts, loading, notify, section } from "../ui.js";

const ACTIONS = [
  { label: "Pause", target: "Paused", when: ["Created", "Assigning", "Running"], text: "The worker is stopped and the task stays out of dispatch until it is resumed." },
  { label: "Resume", target: "Created", when: ["Paused"], text: "The task becomes dispatchable again and starts on a skald that supports its class." },
  { label: "Retry", target: "Created", when: ["Failed", "Cancelled", "Finished"], text: "The task runs again with a fresh retry budget." },
  { label: "Cancel", target: "Cancelled", when: ["Created", "Assigning", "Running", "Paused"], text: "The worker is stopped and the task ends as Cancelled.", danger: true },
  { label: "Delete", remove: true, when: ["Created", "Assigning", "Running", "Paused", "Finished", "Failed", "Cancelled"], text: "A running worker is stopped first; the task, its history and its result are gone for good.", danger: true },
];
const LOG_POLL_MS = 1000;
const MAX_LOG_LINES = 500;
const MAX_HEARTBEATS = 120;

// A task's requires / nodeSelector as text: null falls back to its class's, {} asks for nothing.
function pairs(value, none) {
  if (value == null) return "as its class declares";
  const text = Object.entries(value).map(([k, v]) => `${k}=${v}`).join(", ");
  return text || none;
}

// The statuses whose requirements can still change (an ended task is retried first; a Failed one
// the dispatcher will retry is accepted by the API, any other gets its 409 shown in the form).
const PLACEMENT_EDITABLE = ["Created", "Assigning", "Running", "Paused", "Failed"];

export function taskView(main, { param: taskId, ctx }) {
  const { live } = ctx;
  const title = h("h1", { class: "task-title" }, taskId);
  const badge = h("span", { id: "task-status" });
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Task actions" });
  const fields = h("div", {}, loading());
  const attachView = h("pre", { class: "json", id: "attachments-json", tabindex: "0", "aria-label": "Attachments as JSON" });
  const attachForm = h("div", {});
  const placementBox = h("div", { class: "placement-edit" });
  const heartbeat = h("div", { id: "heartbeat" }, loading());
  const history = h("div", { id: "status-history" }, loading());
  const exception = h("div", { id: "exception" });
  const result = h("div", { id: "result" });
  const logList = h("ol", { class: "log", id: "log-lines", role: "log", "aria-label": "Recent log lines", tabindex: "0" });
  const logState = h("p", { class: "muted", id: "log-state" }, "Loading log lines…");
  const follow = h("input", { type: "checkbox", id: "log-follow", checked: true });
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/tasks" }, "Tasks"), " / ", h("span", { class: "mono" }, taskId)),
    h("div", { class: "title-row" }, title, badge),
    actions,
    h("div", { class: "grid-2" }, section("Fields", fields, placementBox), section("Attachments", attachView, attachForm)),
    h("div", { class: "grid-2" }, section("Heartbeat", heartbeat), section("Status history", history)),
    h("div", { class: "grid-2" }, section("Result", result), section("Last exception", exception)),
    section("Log", h("div", { class: "log-tools" }, h("div", { class: "check" }, follow, h("label", { for: "log-follow" }, "Follow new lines"))), logState, logList),
  );

  let task = null;
  let schema = null;
  let formBuilt = false;
  let samples = [];
  let destroyed = false;

  function renderFacts() {
    fill(fields, 
      facts([
        ["Id", h("span", { class: "mono" }, task.id)],
        ["Name", task.name],
        ["Class", task.className || task.type],
        ["Status", statusBadge(task.status)],
        task.status === "Created" && task.placement ? ["Waiting for a node", h("span", { id: "task-placement", class: "placement" }, task.placement)] : null,
        ["Executor", task.executor ? h("a", { href: `#/skalds/${encodeURIComponent(task.executor)}` }, task.executor) : null],
        ["Mode", task.mode],
        ["Source", task.source],
        ["Priority", String(task.priority ?? 0)],
        ["Retries", task.retries !== undefined ? String(task.retries) : null],
        ["Heartbeat", task.heartbeat ?? null],
        ["Created", fmtTime(task.createDateTime)],
        ["Updated", fmtTime(task.updateDateTime)],
        ["Deadline", task.deadlineDateTime ? fmtTime(task.deadlineDateTime) : null],
        ["Not before", task.notBefore ? fmtTime(task.notBefore) : null],
        ["Max run time", task.maxRunTime ? `${task.maxRunTime} s` : null],
        ["Requires", pairs(task.requires, "nothing")],
        ["Node selector", pairs(task.nodeSelector, "any node")],
        ["CPU", task.usage && task.usage.cpuPercent != null ? `${task.usage.cpuPercent} %` : null],
        ["Memory", task.usage && task.usage.memoryBytes != null ? fmtBytes(task.usage.memoryBytes) : null],
        ["Dependencies", (task.dependencies || []).join(", ")],
        ["Description", task.description],
      ]),
    );
  }

  function renderTask() {
    if (!task) return;
    title.textContent = task.name || task.id;
    fill(badge, statusBadge(task.status));
    fill(actions, 
      ACTIONS.filter((a) => a.when.includes(task.status)).map((a) =>
        h("button", { type: "button", class: a.danger ? "danger" : "", "data-action": a.label.toLowerCase(), onclick: () => act(a) }, `${a.label} task`),
      ),
    );
    renderFacts();
    attachView.textContent = pretty(task.attachments ?? {});
    fill(result, task.result != null
      ? h("pre", { class: "json", id: "result-json", tabindex: "0", "aria-label": "Result as JSON" }, pretty(task.result))
      : h("p", { class: "muted" }, task.status === "Finished" ? "Main returned nothing." : "None yet."));
    const text = task.exception || task.error;
    fill(exception, text ? h("pre", { class: "exception", tabindex: "0", "aria-label": "Exception text" }, text) : h("p", { class: "muted" }, "None."));
    if (!formBuilt && schema !== null) buildForm();
    renderPlacementEdit();
  }

  // ---- placement: PUT /api/tasks/{id}/requirements ------------------------------------------
  // The inputs take the API's own text form (gpu=1,slots=2 / zone=eu-1), sent as typed: the API
  // checks it and its messages go under the input they are about. "Use the class's" sends null.
  const placementButton = h("button", { type: "button", id: "edit-placement", "aria-expanded": "false", "aria-controls": "placement-form" }, "Edit placement");
  const placementWarnings = h("div", { class: "form-warning", id: "placement-warnings", role: "status", hidden: true });
  let placementForm = null;
  placementButton.addEventListener("click", () => (placementForm ? closePlacementForm() : openPlacementForm()));
  placementBox.append(placementButton, placementWarnings);

  function renderPlacementEdit() {
    placementButton.hidden = !placementForm && !PLACEMENT_EDITABLE.includes(task.status);
  }

  function closePlacementForm() {
    if (placementForm) placementForm.remove();
    placementForm = null;
    placementButton.setAttribute("aria-expanded", "false");
    renderPlacementEdit();
    placementButton.focus();
  }

  function placementField(key, label, value, example, empty) {
    const id = `placement-${key}`;
    const input = h("input", { type: "text", id, name: key, placeholder: example, autocomplete: "off", spellcheck: "false", "aria-describedby": `${id}-hint` });
    const inherit = h("input", { type: "checkbox", id: `${id}-class`, name: `${key}-class` });
    const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
    const wrapper = h(
      "div",
      { class: "field" },
      h("label", { for: id }, label),
      input,
      h("p", { class: "hint", id: `${id}-hint` }, `e.g. ${example}; empty: ${empty}`),
      h("div", { class: "check" }, inherit, h("label", { for: `${id}-class` }, "Use the class's")),
      error,
    );
    const sync = () => {
      input.disabled = inherit.checked;
    };
    inherit.addEventListener("change", sync);
    inherit.checked = value == null;
    input.value = value == null ? "" : Object.entries(value).map(([k, v]) => `${k}=${v}`).join(",");
    sync();
    return { wrapper, input, inherit, field: { control: input, error, wrapper }, read: () => (inherit.checked ? null : input.value.trim()) };
  }

  function openPlacementForm() {
    const requires = placementField("requires", "Requires", task.requires, "gpu=1,slots=2", "nothing");
    const selector = placementField("nodeSelector", "Node selector", task.nodeSelector, "zone=eu-1", "any node");
    const group = { fields: new Map([["requires", requires.field], ["nodeSelector", selector.field]]) };
    const formError = h("div", { class: "form-error", id: "placement-error", role: "alert", hidden: true });
    const save = h("button", { type: "submit", class: "primary" }, "Save placement");
    const cancel = h("button", { type: "button", onclick: closePlacementForm }, "Cancel");
    const form = h(
      "form",
      { class: "task-form placement-form", id: "placement-form", novalidate: true, "aria-label": "Edit placement" },
      h(
        "fieldset",
        {},
        h("legend", {}, "Where the task may run (a placed task is not moved: they apply the next time it is placed)"),
        h("div", { class: "form-grid" }, requires.wrapper, selector.wrapper),
      ),
      formError,
      h("div", { class: "form-actions" }, save, cancel),
    );
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") closePlacementForm();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors([group]);
      formError.hidden = true;
      save.disabled = true;
      try {
        const answer = await put(`/api/tasks/${encodeURIComponent(taskId)}/requirements`, { requires: requires.read(), nodeSelector: selector.read() });
        const warnings = answer.warnings || [];
        delete answer.warnings;
        task = answer;
        fill(placementWarnings, warnings.length ? h("ul", {}, warnings.map((w) => h("li", {}, w))) : null);
        placementWarnings.hidden = !warnings.length;
        notify("Placement updated");
        closePlacementForm();
        renderTask();
      } catch (err) {
        showRefusal(err, [group], formError);
      } finally {
        save.disabled = false;
      }
    });
    placementForm = form;
    placementWarnings.hidden = true;
    placementButton.setAttribute("aria-expanded", "true");
    placementBox.insertBefore(form, placementWarnings);
    (requires.inherit.checked ? requires.inherit : requires.input).focus();
  }

  function buildForm() {
    formBuilt = true;
    clear(attachForm);
    const box = h("div", { class: "form-grid" });
    const hasFields = schema && schema.properties && Object.keys(schema.properties).length;
    const group = hasFields
      ? schemaFields(box, schema, { prefix: "attachments", values: task.attachments || {}, idPrefix: "edit" })
      : schemaFields(box, { properties: { attachments: { title: "Attachments (JSON)" } } }, { values: { attachments: task.attachments || {} }, idPrefix: "edit" });
    const formError = h("div", { class: "form-error", role: "alert", hidden: true });
    const save = h("button", { type: "submit", class: "primary" }, "Save attachments");
    const form = h(
      "form",
      { class: "task-form", novalidate: true, "aria-label": "Update attachments" },
      h("fieldset", {}, h("legend", {}, "Update attachments (the running worker gets them at once)"), box),
      formError,
      h("div", { class: "form-actions" }, save),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors([group]);
      formError.hidden = true;
      const { values, problems } = group.read();
      if (problems.length) {
        showErrors([group], problems);
        return;
      }
      const attachments = hasFields ? values : values.attachments || {};
      save.disabled = true;
      try {
        task = await put(`/api/tasks/${encodeURIComponent(taskId)}/attachments`, { attachments });
        notify("Attachments updated");
        renderTask();
      } catch (err) {
        showRefusal(err, [group], formError);
      } finally {
        save.disabled = false;
      }
    });
    attachForm.append(form);
  }

  async function act(action) {
    const name = task.name || task.id;
    const ok = await confirmAction({ title: `${action.label} task ${name}?`, text: action.text, confirm: `${action.label} task`, danger: action.danger });
    if (!ok) return;
    if (action.remove) {
      try {
        await api("DELETE", `/api/tasks/${encodeURIComponent(taskId)}`);
        notify(`Deleted: ${name}`);
        go("#/tasks");
      } catch (err) {
        notify(err.message, "error");
      }
      return;
    }
    try {
      task = await put(`/api/tasks/${encodeURIComponent(taskId)}/status`, { status: action.target });
      notify(`${action.label}: ${name} is ${task.status}`);
      renderTask();
      loadHistory();
    } catch (err) {
      notify(err.message, "error");
    }
  }

  // The stream's latest view of this task: a read that raced with a change is read again.
  let streamSeen = null;
  const newerThanShown = (seen) => task && (seen.updateDateTime || 0) > (task.updateDateTime || 0);

  async function loadTask() {
    try {
      task = await get(`/api/tasks/${encodeURIComponent(taskId)}`);
      renderTask();
      if (streamSeen && newerThanShown(streamSeen)) refresh();
      if (schema === null) loadSchema();
    } catch (err) {
      fill(fields, errorBox(err));
      clear(actions);
    }
  }

  async function loadSchema() {
    try {
      const classes = (await get("/api/tasks/classes")).items || [];
      const cls = classes.find((c) => c.className === (task.className || task.type));
      schema = (cls && cls.schema) || {};
    } catch {
      schema = {};
    }
    renderTask();
  }

  function drawHeartbeat(info) {
    const points = samples.map((p) => ({ x: p.timestamp, y: p.heartbeat }));
    const alive = info ? info.isAlive : task && task.status === "Running";
    fill(heartbeat, 
      facts([
        ["Current", info?.heartbeat ?? task?.heartbeat ?? "—"],
        ["Alive", alive ? "yes" : "no"],
        ["Last update", fmtTime(info?.lastUpdate ?? (samples.length ? samples[samples.length - 1].timestamp : null))],
      ]),
      lineChart([{ name: "Heartbeat", cls: "s-heartbeat", points }], { label: `Heartbeat history of task ${taskId}`, seconds: true, height: 160, step: true }),
    );
  }

  let lastInfo = null;
  async function loadHeartbeat() {
    try {
      lastInfo = await get(`/api/tasks/${encodeURIComponent(taskId)}/heartbeat`);
      samples = (lastInfo.heartbeatHistory || []).slice(-MAX_HEARTBEATS);
      drawHeartbeat(lastInfo);
    } catch (err) {
      fill(heartbeat, errorBox(err));
    }
  }

  async function loadHistory() {
    try {
      const data = await get(`/api/tasks/${encodeURIComponent(taskId)}/history`);
      const items = data.items || [];
      if (!items.length) {
        fill(history, h("p", { class: "muted" }, "No status changes recorded."));
        return;
      }
      fill(history, 
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "history" },
            h("caption", { class: "sr-only" }, "Status history, oldest first"),
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Executor"), h("th", { scope: "col", class: "opt" }, "Detail"))),
            h(
              "tbody",
              {},
              items.map((item) => h("tr", {}, h("td", {}, fmtTime(item.timestamp)), h("td", {}, statusBadge(item.status)), h("td", {}, item.executor || "—"), h("td", { class: "opt" }, item.detail || ""))),
            ),
          ),
        ),
      );
    } catch (err) {
      fill(history, err.noRoute ? h("p", { class: "muted" }, "No status history (this controller does not record it).") : errorBox(err));
    }
  }

  // ---- log tail ----------------------------------------------------------------------------
  let lastSeq = 0;
  let logTimer = null;
  let logFailures = 0;
  async function pollLogs() {
    logTimer = null;
    if (destroyed) return;
    try {
      const data = await get(withQuery(`/api/tasks/${encodeURIComponent(taskId)}/logs`, { after: lastSeq, limit: 200 }));
      logFailures = 0;
      const lines = data.lines || [];
      if (lines.length) {
        const atBottom = logList.scrollTop + logList.clientHeight >= logList.scrollHeight - 8;
        for (const line of lines) {
          logList.append(
            h(
              "li",
              { class: `log-line level-${String(line.level || "").toLowerCase()}`, "data-seq": line.seq },
              h("time", { class: "log-time" }, fmtTime(line.timestamp)),
              h("span", { class: "log-level" }, line.level || ""),
              h("span", { class: "log-msg" }, line.message),
            ),
          );
        }
        while (logList.childElementCount > MAX_LOG_LINES) logList.firstElementChild.remove();
        if (follow.checked && (atBottom || lines.length)) logList.scrollTop = logList.scrollHeight;
      }
      // The server's last seq, even when lower: its list started again (it expired) and the
      // next poll must ask from there.
      if (typeof data.lastSeq === "number") lastSeq = data.lastSeq;
      logState.textContent = logList.childElementCount ? "" : "No log lines yet.";
      logState.hidden = logList.childElementCount > 0;
    } catch (err) {
      logState.hidden = false;
      if (err.noRoute) {
        logState.textContent = "Log lines are not available from this controller.";
        return; // no point asking again
      }
      logFailures += 1;
      logState.textContent = `Cannot read log lines: ${err.message}`;
    }
    const ended = task && ["Finished", "Failed", "Cancelled"].includes(task.status);
    const wait = Math.min((ended ? 5 : 1) * LOG_POLL_MS * 2 ** logFailures, 15000); // ended: few new lines
    if (!destroyed) logTimer = setTimeout(pollLogs, wait);
  }

  // ---- live --------------------------------------------------------------------------------
  const refresh = throttle(() => {
    loadTask();
    loadHistory();
  }, 200);
  const onEvent = (event) => {
    if (event.taskId !== taskId) return;
    if (event.type === "task_heartbeat") {
      const value = event.data ? event.data.heartbeat : null;
      samples.push({ timestamp: event.timestamp, heartbeat: value });
      samples = samples.slice(-MAX_HEARTBEATS);
      if (task) {
        task.heartbeat = value;
        if (event.data && "usage" in event.data && JSON.stringify(task.usage) !== JSON.stringify(event.data.usage)) {
          task.usage = event.data.usage;
          renderFacts();
        }
      }
      drawHeartbeat(lastInfo ? { ...lastInfo, heartbeat: value, isAlive: value !== null && value >= 0 && value < 200, lastUpdate: event.timestamp } : null);
    } else if (event.type === "task_deleted") {
      notify(`Task ${taskId} was deleted`);
      clear(actions);
      if (placementForm) closePlacementForm();
      placementButton.hidden = true;
      badge.textContent = "deleted";
    } else if (["task_status", "task_error", "task_exception", "task_placement", "task_requirements"].includes(event.type)) {
      if (event.type === "task_status" && event.data) streamSeen = event.data;
      refresh();
    }
  };
  const unwatch = watchTask(taskId, (event) => {
    if (event.type === "snapshot") {
      // On (re)connect: whatever changed before the stream opened is only in the snapshot.
      const seen = ((event.data && event.data.tasks) || []).find((t) => t.id === taskId);
      if (seen) {
        streamSeen = seen;
        if (newerThanShown(seen)) refresh();
      }
      return;
    }
    onEvent(event);
  });

  loadTask();
  loadHeartbeat();
  loadHistory();
  pollLogs();
  return {
    destroy() {
      destroyed = true;
      unwatch();
      refresh.cancel();
      clearTimeout(logTimer);
    },
  };
}
