// New task: pick a class the online skalds advertise; its attachment schema becomes the form.
// The API validates; its messages appear under the fields they name.

import { get, post } from "../api.js";
import { clear, fill, h } from "../dom.js";
import { clearErrors, schemaFields, showRefusal } from "../form.js";
import { go } from "../nav.js";
import { errorBox, loading, notify, section } from "../ui.js";

/** The task's own fields, described like an attachment schema so the same builder draws them. */
const TASK_SCHEMA = {
  properties: {
    name: { type: "string", title: "Name", maxLength: 500, description: "shown in lists instead of the id" },
    id: { type: "string", title: "Task id", maxLength: 200, description: "optional; generated when empty" },
    priority: { type: "integer", title: "Priority", minimum: 0, maximum: 10, default: 0, description: "higher runs first" },
    description: { type: "string", title: "Description", maxLength: 5000, format: "textarea" },
  },
};

export function createView(main, { query }) {
  const body = h("div", {}, loading("Loading task classes…"));
  main.append(h("h1", {}, "New task"), section("Create a task", body));

  async function start() {
    let classes;
    try {
      classes = (await get("/api/tasks/classes")).items || [];
    } catch (err) {
      fill(body, errorBox(err));
      return;
    }
    if (!classes.length) {
      fill(body, h("p", { class: "muted" }, "No online skald advertises a task class, so there is nothing to create yet."));
      return;
    }
    classes.sort((a, b) => a.className.localeCompare(b.className));
    const wanted = query.get("class");
    const classSelect = h(
      "select",
      { id: "new-class", name: "className", required: true, "aria-describedby": "new-class-hint new-class-error" },
      classes.map((c) => h("option", { value: c.className }, c.className)),
    );
    if (wanted && classes.some((c) => c.className === wanted)) classSelect.value = wanted;
    const classHint = h("p", { class: "hint", id: "new-class-hint" });
    const classError = h("p", { class: "field-error", id: "new-class-error", hidden: true, "data-error-for": "className" });
    const classField = h("div", { class: "field", "data-field": "className" }, h("label", { for: "new-class" }, "Class", h("span", { class: "req", "aria-hidden": "true" }, " *")), classSelect, classHint, classError);
    const classGroup = { fields: new Map([["className", { control: classSelect, error: classError, wrapper: classField }]]) };

    const taskBox = h("div", { class: "form-grid" });
    const taskGroup = schemaFields(taskBox, TASK_SCHEMA, { prefix: "", idPrefix: "new" });
    const attachBox = h("div", { class: "form-grid" });
    let attachGroup = null;
    const formError = h("div", { class: "form-error", role: "alert", hidden: true });
    const submit = h("button", { type: "submit", class: "primary" }, "Create task");

    function drawAttachments() {
      const cls = classes.find((c) => c.className === classSelect.value);
      classHint.textContent = cls && cls.skalds && cls.skalds.length ? `run by ${cls.skalds.join(", ")}` : "";
      clear(attachBox);
      const schema = (cls && cls.schema) || {};
      if (!schema.properties || !Object.keys(schema.properties).length) {
        attachGroup = schemaFields(attachBox, { properties: { attachments: { title: "Attachments (JSON)" } } }, { prefix: "", idPrefix: "att" });
        attachGroup.raw = true;
        attachGroup.fields.get("attachments").control.value = "{}";
      } else {
        attachGroup = schemaFields(attachBox, schema, { prefix: "attachments", idPrefix: "att" });
      }
    }
    classSelect.addEventListener("change", drawAttachments);
    drawAttachments();

    const form = h(
      "form",
      { class: "task-form", novalidate: true, "aria-label": "New task" },
      classField,
      h("fieldset", {}, h("legend", {}, "Attachments"), attachBox),
      h("fieldset", {}, h("legend", {}, "Task"), taskBox),
      formError,
      h("div", { class: "form-actions" }, submit),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const groups = [classGroup, taskGroup, attachGroup];
      clearErrors(groups);
      formError.hidden = true;
      const task = taskGroup.read();
      const attachments = attachGroup.read();
      const problems = [...task.problems, ...attachments.problems];
      if (problems.length) {
        showErrors(groups, problems);
        return;
      }
      const payload = { className: classSelect.value, ...task.values };
      payload.attachments = attachGroup.raw ? attachments.values.attachments || {} : attachments.values;
      submit.disabled = true;
      try {
        const created = await post("/api/tasks", payload);
        // A class whose skalds went offline meanwhile: stored to wait, and the answer says so.
        const note = created.warnings && created.warnings.length ? `; ${created.warnings.join("; ")}` : "";
        notify(`Task ${created.name || created.id} created${note}`);
        go(`#/tasks/${encodeURIComponent(created.id)}`);
      } catch (err) {
        showRefusal(err, groups, formError);
      } finally {
        submit.disabled = false;
      }
    });
    fill(body, form);
    classSelect.focus();
  }

  start();
  return { keepFocus: true };
}
