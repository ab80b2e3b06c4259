"""Attachments as the fleet advertises them, and the checks a task passes before it is stored.

A skald advertises each class's attachments model as a JSON schema (``skalds:{id}:task-schemas``),
so the controller and :class:`~skalds.client.SkaldsClient` never import user code and validate
against what the fleet can actually run. The schema is the model's by alias, as 0.3.x consumers
(form builders) read it, plus two keywords on the object of every model that say what JSON schema
cannot (docs/wire-formats.md):

``x-skalds-keys``
    other keys the model accepts for a property → that property: the field's name beside its
    alias (a worker validates attachments by name as well as by alias), and the choices of a
    ``validation_alias``.
``x-skalds-extra``
    the model's ``extra``: ``"ignore"`` (the default: the worker would drop an unknown key
    silently, so a check refuses it as a misspelling), ``"forbid"`` (refused too) or ``"allow"``
    (kept).

:func:`check_task` is the one check of a new task, shared by the API and the client: a class no
online skald advertises is accepted with a warning (the task waits); attachments of an advertised
class are rewritten to the property keys (aliases), refused when a key is unknown (naming the
closest known key) or when they fail the schema. An object without ``x-skalds-extra`` (a schema
from a skald older than these keywords) is checked against the schema alone. The worker validates
again against its own model when it starts.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import AliasChoices, AliasPath, BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from skalds.errors import InvalidAttachments, MissingDriver, UnknownWorkerClass
from skalds.utils.logging import logger

_MAX_DETAILS = 50
#: How deep :func:`normalize_attachments` follows nested models (attachments may nest 64 levels).
_MAX_WALK_DEPTH = 64
#: The keywords added to the schema of each model (see the module's docstring).
KEYS_KEYWORD = "x-skalds-keys"
EXTRA_KEYWORD = "x-skalds-extra"
#: Schemas a class name maps to: name → (attachments JSON schema, ids of the online skalds advertising it).
ClassSchemas = Mapping[str, tuple[dict[str, Any], list[str]]]


# ---- advertising ---------------------------------------------------------------------------
def _accepted_keys(name: str, info: Any) -> list[str]:
    """Every top-level key the worker's validation (by name and by alias) takes for a field."""
    keys = [name]
    if info.alias:
        keys.append(info.alias)
    choices = info.validation_alias
    options = choices.choices if isinstance(choices, AliasChoices) else [choices]
    for option in options:
        if isinstance(option, str):
            keys.append(option)
        elif isinstance(option, AliasPath) and len(option.path) == 1 and isinstance(option.path[0], str):
            keys.append(option.path[0])
    return list(dict.fromkeys(keys))


class _AdvertisedSchema(GenerateJsonSchema):
    """Pydantic's JSON schema, with :data:`KEYS_KEYWORD` and :data:`EXTRA_KEYWORD` on every model."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        js = super().model_schema(schema)
        cls = schema["cls"]
        if not (isinstance(js, dict) and isinstance(js.get("properties"), dict) and issubclass(cls, BaseModel)):
            return js
        properties: dict[str, Any] = js["properties"]
        others: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            keys = _accepted_keys(name, info)
            own = next((k for k in keys if k in properties), None)
            if own is not None:
                others.update({k: own for k in keys if k != own and k not in properties})
        if others:
            js[KEYS_KEYWORD] = others
        js[EXTRA_KEYWORD] = cls.model_config.get("extra") or "ignore"
        return js


def attachments_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema a skald advertises for an attachments model (see the module's docstring)."""
    return model.model_json_schema(by_alias=True, schema_generator=_AdvertisedSchema)


# ---- checking ------------------------------------------------------------------------------
def unknown_class(class_name: str, known: list[str]) -> UnknownWorkerClass:
    """The error for a class no online skald advertises; ``known`` are those that are."""
    hint = f"known classes: {', '.join(sorted(known))}" if known else "no skald is online, so no class is known"
    return UnknownWorkerClass(
        f"no online skald advertises task class {class_name!r} ({hint})", [{"field": "className", "message": hint}]
    )


def _jsonschema() -> Any:
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        raise MissingDriver(
            "checking attachments against the schema skalds advertise needs the jsonschema package: "
            "pip install 'skalds[controller]'"
        ) from None
    return jsonschema


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    """The validator of a schema (given as canonical JSON), checked against its metaschema once:
    checking a schema costs far more than validating one task's attachments with it."""
    jsonschema = _jsonschema()
    schema = json.loads(schema_json)
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        return cls(schema)
    except jsonschema.SchemaError as exc:
        logger.warning(f"a skald advertises an unusable attachments schema ({exc.message}); not validating")
        return None


def attachment_errors(
    schema: dict[str, Any], attachments: Any, skip: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Each way ``attachments`` fails ``schema``: ``{"field": "attachments.a.b", "message": ...}``.
    ``additionalProperties`` errors of the objects at the paths in ``skip`` are left out (their
    unknown keys were reported already)."""
    if not schema:
        return []
    validator = _validator(json.dumps(schema, sort_keys=True))
    if validator is None:
        return []
    details = []
    for error in sorted(validator.iter_errors(attachments), key=lambda e: [str(p) for p in e.absolute_path]):
        parts = [str(p) for p in error.absolute_path]
        if error.validator == "additionalProperties" and ".".join(parts) in skip:
            continue
        missing = _missing_property(error)
        if missing is not None:  # name the field that is missing, not the object that lacks it
            parts.append(missing)
        path = ".".join(parts)
        details.append({"field": f"attachments.{path}" if path else "attachments", "message": error.message})
        if len(details) >= _MAX_DETAILS:
            break
    return details


def _missing_property(error: Any) -> str | None:
    """For a ``required`` error, the property it is about (its message names one of them)."""
    if error.validator != "required" or not isinstance(error.instance, dict):
        return None
    for name in error.validator_value or ():
        if isinstance(name, str) and name not in error.instance and repr(name) in error.message:
            return name
    return None


def _close_match(word: str, candidates: list[str]) -> str | None:
    """The candidate ``word`` most likely misspells (case ignored), or None."""
    lowered = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


@dataclass
class _Walk:
    """The state of one :func:`normalize_attachments` pass."""

    root: dict[str, Any]
    details: list[dict[str, Any]] = field(default_factory=list)
    #: Paths (dotted, as jsonschema reports them) of the objects whose unknown keys were checked.
    checked: set[str] = field(default_factory=set)

    def resolve(self, node: Any) -> Any:
        """``node`` with a local ``$ref`` (``#/$defs/X``) followed; a single ``allOf`` unwrapped."""
        for _ in range(8):
            if not isinstance(node, dict):
                return node
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                target: Any = self.root
                for part in ref[2:].split("/"):
                    target = target.get(part) if isinstance(target, dict) else None
                node = target
            elif isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
                node = node["allOf"][0]
            else:
                return node
        return node

    def model_of(self, node: Any) -> dict[str, Any] | None:
        """The one model schema (an object with :data:`EXTRA_KEYWORD`) ``node`` stands for: itself,
        or the only model among the branches of ``anyOf`` / ``oneOf`` (``Optional[Model]``)."""
        node = self.resolve(node)
        if not isinstance(node, dict):
            return None
        if EXTRA_KEYWORD in node:
            return node
        branches = node.get("anyOf") or node.get("oneOf")
        if isinstance(branches, list):
            models = [m for m in (self.resolve(b) for b in branches) if isinstance(m, dict) and EXTRA_KEYWORD in m]
            if len(models) == 1:
                return models[0]
        return None

    def value(self, node: Any, value: Any, path: list[str], depth: int) -> Any:
        """``value`` with the keys of every model object in it rewritten to their properties."""
        if depth > _MAX_WALK_DEPTH:
            return value
        if isinstance(value, dict):
            model = self.model_of(node)
            if model is not None:
                return self.model(model, value, path, depth)
            resolved = self.resolve(node)
            extra = resolved.get("additionalProperties") if isinstance(resolved, dict) else None
            if isinstance(extra, dict) and not (isinstance(resolved, dict) and resolved.get("properties")):
                return {k: self.value(extra, v, [*path, k], depth + 1) for k, v in value.items()}
        elif isinstance(value, list):
            resolved = self.resolve(node)
            items = resolved.get("items") if isinstance(resolved, dict) else None
            if isinstance(items, dict):
                return [self.value(items, v, [*path, str(n)], depth + 1) for n, v in enumerate(value)]
        return value

    def model(self, model: dict[str, Any], value: dict[str, Any], path: list[str], depth: int) -> dict[str, Any]:
        found = model.get("properties")
        properties: dict[str, Any] = found if isinstance(found, dict) else {}
        found = model.get(KEYS_KEYWORD)
        others: dict[str, str] = found if isinstance(found, dict) else {}
        extra = model.get(EXTRA_KEYWORD)
        where = ".".join(path)
        self.checked.add(where)
        out: dict[str, Any] = {}
        for key, item in value.items():
            own = others.get(key, key)
            if own in out or (own != key and own in value):
                given = [k for k in value if others.get(k, k) == own]
                self.error(path, own, f"given twice, as {' and '.join(repr(k) for k in given)}; keep one")
                continue
            if own not in properties and extra != "allow":
                self.unknown(path, key, list(properties), list(others))
                continue
            out[own] = self.value(properties.get(own, {}), item, [*path, own], depth + 1)
        return out

    def error(self, path: list[str], key: str, message: str) -> None:
        if len(self.details) < _MAX_DETAILS:
            self.details.append({"field": ".".join(["attachments", *path, key]), "message": message})

    def unknown(self, path: list[str], key: str, known: list[str], others: list[str]) -> None:
        name = ".".join([*path, key])
        match = _close_match(key, [*known, *others])
        if match is not None:
            hint = f"did you mean {'.'.join([*path, match])!r}?"
        else:
            listed = ", ".join(sorted(known)[:20]) or "none"
            hint = f"the model takes: {listed}"
        self.error(path, key, f"unknown attachment {name!r} ({hint})")


def normalize_attachments(schema: dict[str, Any], attachments: Any) -> tuple[Any, list[dict[str, Any]], set[str]]:
    """``attachments`` as the worker's model reads them — each key of a model object rewritten to
    its property (alias) — the details of the keys it would not take (unknown, or given twice) and
    the paths of the objects whose keys were checked."""
    walk = _Walk(schema)
    normalized = walk.value(schema, attachments, [], 1)
    return normalized, walk.details, walk.checked


def rename_keys(schema: dict[str, Any], attachments: dict[str, Any]) -> dict[str, Any]:
    """``attachments`` with each top-level key the model also takes (a field's name) rewritten to
    its property (alias); where both are given the property wins, as in the worker. What a merge
    of an update onto stored attachments needs: both sides then use the same keys."""
    model = _Walk(schema).model_of(schema)
    others = model.get(KEYS_KEYWORD) if model is not None else None
    if not isinstance(others, dict) or not others:
        return attachments
    out = {}
    for key, value in attachments.items():
        own = others.get(key, key)
        if own == key or own not in attachments:
            out[own] = value
    return out


def check_attachments(class_name: str, schema: dict[str, Any], attachments: Any) -> Any:
    """``attachments`` normalized (see :func:`normalize_attachments`), or :class:`InvalidAttachments`
    listing every invalid field when they do not fit the class's model."""
    if attachments is None:  # a worker reads no attachments as an empty object
        check_attachments(class_name, schema, {})
        return None
    normalized, details, checked = normalize_attachments(schema, attachments)
    details += attachment_errors(schema, normalized, frozenset(checked))
    if details:
        listed = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        raise InvalidAttachments(
            f"attachments do not match the model of {class_name}: {listed}", details[:_MAX_DETAILS]
        )
    return normalized


def unadvertised_warning(class_name: str, known: list[str]) -> str:
    """The warning for a task stored although no online skald runs its class."""
    match = _close_match(class_name, known)
    hint = f" (did you mean {match!r}?)" if match is not None and match != class_name else ""
    return (
        f"no online skald runs class {class_name!r}{hint}; the task waits until one does, "
        "and its attachments could not be validated"
    )


@dataclass(frozen=True)
class CheckedTask:
    """What :func:`check_task` found: the attachments to store, and warnings for the caller."""

    attachments: Any
    warnings: list[str] = field(default_factory=list)


def check_task(class_name: str, attachments: Any, classes: ClassSchemas, *, require_class: bool = False) -> CheckedTask:
    """Check a new task against the classes the online skalds advertise (``classes``, see
    ``Fleet.class_schemas``): attachments of an advertised class are normalized or refused
    (:class:`InvalidAttachments`); a class no online skald advertises is accepted with a warning —
    the task waits for a skald that runs it — or, with ``require_class``, refused
    (:class:`UnknownWorkerClass`)."""
    if class_name in classes:
        return CheckedTask(check_attachments(class_name, classes[class_name][0], attachments))
    if require_class:
        raise unknown_class(class_name, list(classes))
    return CheckedTask(attachments, [unadvertised_warning(class_name, list(classes))])
