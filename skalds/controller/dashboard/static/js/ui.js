// Pieces the pages share: the confirmation dialog, notices, task tables, pagination, sections.

import { clear, fmtTime, h, shortId, statusBadge } from "./dom.js";

/** Ask before acting. Resolves true when the operator confirms. Esc or "Back" resolve false. */
export function confirmAction({ title, text, confirm, danger = false }) {
  const dialog = document.getElementById("confirm-dialog");
  clear(dialog);
  const titleId = "confirm-title";
  const textId = "confirm-text";
  dialog.setAttribute("aria-labelledby", titleId);
  dialog.setAttribute("aria-describedby", textId);
  const ok = h("button", { type: "submit", value: "ok", class: danger ? "danger" : "primary" }, confirm);
  dialog.append(
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: titleId }, title),
      h("p", { id: textId }, text),
      h("div", { class: "dialog-actions" }, h("button", { type: "submit", value: "back" }, "Back"), ok),
    ),
  );
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    ok.focus();
  });
}

/** A short notice in the live region (errors stay until dismissed). */
export function notify(message, kind = "info") {
  const area = document.getElementById("notices");
  const close = h("button", { type: "button", class: "link", "aria-label": "Dismiss notice" }, "×");
  const item = h("div", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, h("span", {}, message), close);
  close.addEventListener("click", () => item.remove());
  area.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 5000);
}

export function section(title, ...children) {
  const id = `sec-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

export function loading(text = "Loading…") {
  return h("p", { class: "muted", role: "status" }, text);
}

export function errorBox(err) {
  return h("p", { class: "error-box", role: "alert" }, err && err.message ? err.message : String(err));
}

/** Why a waiting (Created) task fits on no node, under its status in a tasks table (null: no reason). */
export function placementHint(reason) {
  if (!reason) return null;
  return h("div", { class: "sub placement-hint", title: `Waiting for a node: ${reason}` }, `waiting: ${reason}`);
}

/** Put a row's placement hint in line with a task_placement event (the row stays as it is otherwise). */
export function setPlacementHint(row, reason) {
  const cell = row.querySelector(".status-cell");
  if (!cell) return;
  const old = cell.querySelector(".placement-hint");
  if (old) old.remove();
  const hint = placementHint(reason);
  if (hint) cell.append(hint);
}

/** The tasks table used by the task list, the skald page and the overview. */
export function taskTable(items, { caption, showExecutor = true } = {}) {
  if (!items.length) return h("p", { class: "muted empty" }, "No tasks.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "tasks" },
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Task"),
          h("th", { scope: "col" }, "Class"),
          h("th", { scope: "col" }, "Status"),
          showExecutor ? h("th", { scope: "col", class: "opt" }, "Executor") : null,
          h("th", { scope: "col", class: "opt num" }, "Heartbeat"),
          h("th", { scope: "col", class: "opt" }, "Updated"),
        ),
      ),
      h(
        "tbody",
        {},
        items.map((task) =>
          h(
            "tr",
            { "data-task-id": task.id },
            h(
              "td",
              {},
              h("a", { href: `#/tasks/${encodeURIComponent(task.id)}`, title: task.id }, task.name || shortId(task.id)),
              task.name ? h("div", { class: "sub mono" }, shortId(task.id)) : null,
            ),
            h("td", {}, task.type || task.className),
            h("td", { class: "status-cell" }, statusBadge(task.status), task.status === "Created" ? placementHint(task.placement) : null),
            showExecutor
              ? h("td", { class: "opt" }, task.executor ? h("a", { href: `#/skalds/${encodeURIComponent(task.executor)}` }, task.executor) : "—")
              : null,
            h("td", { class: "opt num hb-cell" }, task.heartbeat ?? "—"),
            h("td", { class: "opt" }, fmtTime(task.updateDateTime)),
          ),
        ),
      ),
    ),
  );
}

/** "Page 2 of 5 · 93 tasks" with previous / next buttons. */
export function pager({ page, pageSize, total, onPage, label = "tasks" }) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  const prev = h("button", { type: "button", disabled: page <= 1, onclick: () => onPage(page - 1) }, "‹ Previous");
  const next = h("button", { type: "button", disabled: page >= pages, onclick: () => onPage(page + 1) }, "Next ›");
  return h(
    "nav",
    { class: "pager", "aria-label": `Pages of ${label}` },
    prev,
    h("span", { class: "pager-text", "aria-live": "polite" }, `Page ${page} of ${pages} · ${total} ${label}`),
    next,
  );
}

/** <dl> of label / value pairs (values may be nodes). */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([label, value]) => [
      h("dt", {}, label),
      h("dd", {}, value === null || value === undefined || value === "" ? "—" : value),
    ]),
  );
}
