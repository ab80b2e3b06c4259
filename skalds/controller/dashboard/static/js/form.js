// Form fields generated from a JSON schema (the attachment schemas the skalds advertise, which
// pydantic produced): one labelled control per property, typed, with defaults, hints and a slot
// for the API's validation message right under it. Validation itself is the API's job: the form
// only converts types, so the message shown is the one the controller gives.

import { ApiError } from "./api.js";
import { fill, h, newId } from "./dom.js";

/** Follow "$ref" (into $defs / definitions) and unwrap Optional[X] (anyOf [X, null]). */
export function resolve(schema, root) {
  let current = schema || {};
  let nullable = false;
  for (let depth = 0; depth < 10; depth += 1) {
    if (current.$ref && typeof current.$ref === "string") {
      const match = current.$ref.match(/^#\/(\$defs|definitions)\/(.+)$/);
      const target = match && root && root[match[1]] ? root[match[1]][match[2]] : null;
      const { $ref, ...rest } = current;
      current = { ...(target || {}), ...rest };
      continue;
    }
    const options = current.anyOf || current.oneOf;
    if (Array.isArray(options)) {
      const nonNull = options.filter((o) => o && o.type !== "null");
      nullable = nullable || nonNull.length < options.length;
      if (nonNull.length === 1) {
        const { anyOf, oneOf, ...rest } = current;
        current = { ...nonNull[0], ...rest };
        continue;
      }
    }
    if (Array.isArray(current.type)) {
      const types = current.type.filter((t) => t !== "null");
      nullable = nullable || types.length < current.type.length;
      current = { ...current, type: types.length === 1 ? types[0] : undefined };
    }
    break;
  }
  return { ...current, nullable };
}

function kindOf(prop) {
  if (Array.isArray(prop.enum) && prop.enum.length) return "enum";
  if (prop.const !== undefined) return "enum";
  if (prop.type === "boolean") return "boolean";
  if (prop.type === "integer") return "integer";
  if (prop.type === "number") return "number";
  if (prop.type === "string") return "string";
  return "json"; // objects, arrays, unions: edited as JSON text
}

function humanize(name) {
  const spaced = name.replace(/_/g, " ").replace(/([a-z0-9])([A-Z])/g, "$1 $2");
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
}

function constraintsText(prop) {
  const parts = [];
  if (prop.minimum !== undefined) parts.push(`≥ ${prop.minimum}`);
  if (prop.exclusiveMinimum !== undefined) parts.push(`> ${prop.exclusiveMinimum}`);
  if (prop.maximum !== undefined) parts.push(`≤ ${prop.maximum}`);
  if (prop.exclusiveMaximum !== undefined) parts.push(`< ${prop.exclusiveMaximum}`);
  if (prop.minLength !== undefined) parts.push(`at least ${prop.minLength} characters`);
  if (prop.maxLength !== undefined) parts.push(`at most ${prop.maxLength} characters`);
  return parts.join(", ");
}

/**
 * Build the controls for `schema`'s properties into `container`.
 * prefix: the API's name for these values in error paths ("attachments", or "" for top level).
 * values: current values (edit) — else the schema defaults are filled in.
 * Returns {read(), fields, setError(path, message)}.
 */
export function schemaFields(container, schema, { prefix = "", values = null, idPrefix = "f" } = {}) {
  const root = schema || {};
  const props = root.properties || {};
  const required = new Set(root.required || []);
  const fields = new Map(); // API path -> field
  for (const [name, raw] of Object.entries(props)) {
    const prop = resolve(raw, root);
    const kind = kindOf(prop);
    const path = prefix ? `${prefix}.${name}` : name;
    const id = newId(`${idPrefix}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`);
    const hintId = `${id}-hint`;
    const errorId = `${id}-error`;
    const isRequired = required.has(name);
    const has = values && Object.prototype.hasOwnProperty.call(values, name);
    const initial = has ? values[name] : prop.default;
    let control;
    if (kind === "boolean") {
      control = h("input", { type: "checkbox", id, name, checked: Boolean(initial) });
    } else if (kind === "enum") {
      const options = prop.enum || [prop.const];
      control = h(
        "select",
        { id, name },
        !isRequired || initial === undefined ? h("option", { value: "" }, "—") : null,
        options.map((option, i) => h("option", { value: String(i) }, String(option))),
      );
      const index = options.findIndex((o) => o === initial);
      control.value = index >= 0 ? String(index) : "";
      control.enumValues = options;
    } else if (kind === "integer" || kind === "number") {
      control = h("input", {
        type: "number",
        id,
        name,
        inputmode: kind === "integer" ? "numeric" : "decimal",
        step: kind === "integer" ? "1" : "any",
        min: prop.minimum,
        max: prop.maximum,
        value: initial === undefined || initial === null ? "" : String(initial),
      });
    } else if (kind === "string") {
      const long = (prop.maxLength || 0) > 1000 || prop.format === "textarea";
      control = h(long ? "textarea" : "input", {
        type: long ? undefined : prop.format === "password" ? "password" : "text",
        id,
        name,
        autocomplete: "off",
        spellcheck: "false",
        value: initial === undefined || initial === null ? "" : String(initial),
      });
      if (long) control.rows = 3;
    } else {
      control = h("textarea", {
        id,
        name,
        rows: 3,
        class: "mono",
        spellcheck: "false",
        value: initial === undefined ? "" : JSON.stringify(initial, null, 1),
      });
    }
    if (isRequired) control.setAttribute("aria-required", "true");
    const hintText = [prop.description, constraintsText(prop), kind === "json" ? "JSON" : ""].filter(Boolean).join(" · ");
    const describedBy = [hintText ? hintId : null, errorId].filter(Boolean).join(" ");
    control.setAttribute("aria-describedby", describedBy);
    const label = h(
      "label",
      { for: id },
      prop.title && prop.title.toLowerCase() !== name.toLowerCase() ? prop.title : humanize(name),
      isRequired ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null,
    );
    // The wire name, for operators who know the API; outside the label so the name stays clean.
    const labelRow = h("div", { class: "label-row" }, label, h("span", { class: "field-name", "aria-hidden": "true" }, name));
    const error = h("p", { class: "field-error", id: errorId, hidden: true, "data-error-for": path });
    const wrapper = h(
      "div",
      { class: `field field-${kind}`, "data-field": path },
      kind === "boolean" ? h("div", { class: "check" }, control, labelRow) : [labelRow, control],
      hintText ? h("p", { class: "hint", id: hintId }, hintText) : null,
      error,
    );
    container.append(wrapper);
    fields.set(path, { name, kind, prop, control, error, wrapper, required: isRequired });
  }

  function read() {
    const out = {};
    const problems = [];
    for (const field of fields.values()) {
      const { control, kind, name } = field;
      if (kind === "boolean") {
        out[name] = control.checked;
      } else if (kind === "enum") {
        if (control.value !== "") out[name] = control.enumValues[Number(control.value)];
      } else if (kind === "integer" || kind === "number") {
        const text = control.value.trim();
        if (text !== "") {
          const number = Number(text);
          out[name] = Number.isFinite(number) ? number : text; // the API says what is wrong with it
        } else if (control.validity && control.validity.badInput) {
          problems.push({ field: field.wrapper.dataset.field, message: "not a number" });
        }
      } else if (kind === "string") {
        if (control.value !== "" || field.required) out[name] = control.value;
      } else {
        const text = control.value.trim();
        if (text !== "") {
          try {
            out[name] = JSON.parse(text);
          } catch (err) {
            problems.push({ field: field.wrapper.dataset.field, message: `not valid JSON: ${err.message}` });
          }
        }
      }
    }
    return { values: out, problems };
  }

  return { read, fields };
}

/**
 * Show API error details next to their fields. `groups` are schemaFields results; details are
 * {field: "attachments.step" | "body.priority" | ..., message}. Returns the details no field took.
 */
export function showErrors(groups, details) {
  const left = [];
  let first = null;
  for (const detail of details || []) {
    let path = String(detail.field || "").replace(/^body\./, "");
    let field = null;
    while (path) {
      for (const group of groups) {
        if (group.fields.has(path)) field = group.fields.get(path);
      }
      if (field) break;
      path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
    }
    if (!field) {
      left.push(detail);
      continue;
    }
    const previous = field.error.hidden ? "" : `${field.error.textContent}; `;
    field.error.textContent = previous + detail.message;
    field.error.hidden = false;
    field.control.setAttribute("aria-invalid", "true");
    field.wrapper.classList.add("invalid");
    first = first || field.control;
  }
  if (first) first.focus();
  return left;
}

export function clearErrors(groups) {
  for (const group of groups) {
    for (const field of group.fields.values()) {
      field.error.textContent = "";
      field.error.hidden = true;
      field.control.removeAttribute("aria-invalid");
      field.wrapper.classList.remove("invalid");
    }
  }
}

/** Show a refused request: each detail under its field, the rest (and any other error) in the
 *  form's alert box ``box``. */
export function showRefusal(err, groups, box) {
  const left = err instanceof ApiError ? showErrors(groups, err.details) : [];
  if (!(err instanceof ApiError) || left.length || !err.details.length) {
    fill(box, h("p", {}, err.message), left.length ? h("ul", {}, left.map((d) => h("li", {}, `${d.field}: ${d.message}`))) : null);
    box.hidden = false;
  }
}
