"""Checks a task must pass before it is stored: its class is known, its attachments fit.

The schemas come from the skalds themselves (``skalds:{id}:task-schemas``, the JSON schema of each
worker's model by alias), so the controller never imports user code and validates against what
the fleet can actually run. The worker validates again against its own model when it starts.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from skalds.errors import InvalidAttachments, UnknownWorkerClass
from skalds.utils.logging import logger

_MAX_DETAILS = 50


def unknown_class(class_name: str, known: list[str]) -> UnknownWorkerClass:
    """The error for a class no online skald advertises; ``known`` are those that are."""
    hint = f"known classes: {', '.join(sorted(known))}" if known else "no skald is online, so no class is known"
    return UnknownWorkerClass(
        f"no online skald advertises task class {class_name!r} ({hint})", [{"field": "className", "message": hint}]
    )


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    """The validator of a schema (given as canonical JSON), checked against its metaschema once:
    checking a schema costs far more than validating one task's attachments with it."""
    schema = json.loads(schema_json)
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        return cls(schema)
    except jsonschema.SchemaError as exc:
        logger.warning(f"a skald advertises an unusable attachments schema ({exc.message}); not validating")
        return None


def attachment_errors(schema: dict[str, Any], attachments: Any) -> list[dict[str, Any]]:
    """Each way ``attachments`` fails ``schema``: ``{"field": "attachments.a.b", "message": ...}``."""
    if not schema:
        return []
    validator = _validator(json.dumps(schema, sort_keys=True))
    if validator is None:
        return []
    details = []
    for error in sorted(validator.iter_errors(attachments), key=lambda e: [str(p) for p in e.absolute_path]):
        parts = [str(p) for p in error.absolute_path]
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


def check_attachments(class_name: str, schema: dict[str, Any], attachments: Any) -> None:
    """Raise :class:`InvalidAttachments` listing every invalid field unless ``attachments`` fit the
    class's schema."""
    details = attachment_errors(schema, attachments)
    if details:
        listed = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        raise InvalidAttachments(f"attachments do not match the schema of {class_name}: {listed}", details)
