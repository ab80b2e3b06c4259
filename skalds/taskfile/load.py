"""Loading a task file: parse it, validate every entry, report each problem where it was typed.

A person owns the file, so nothing in its content makes loading raise: each problem becomes a
:class:`~skalds.errors.TaskSourceError` naming the file, task id, field and line (pydantic errors
are traced back to the line of the offending attachment value, spelled by alias), and the good
entries are still returned as :class:`YamlTaskEntry` values.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from skalds.errors import TaskSourceError
from skalds.model.ids import MAX_TASK_ID_LENGTH, task_id_problem
from skalds.model.task import ModeEnum, Task
from skalds.taskfile.common import (
    ROOT_KEY,
    did_you_mean,
    find_field,
    is_bool,
    item_line,
    key_line,
    kind_of,
    load_yaml,
    new_yaml,
    show_value,
    source_error,
    to_plain,
)

#: Every key an entry may have; anything else is reported (usually a typo).
ENTRY_KEYS = ("className", "isPersistent", "attachments", "name", "description", "priority", "dependencies")
PRIORITY_MIN = 0
PRIORITY_MAX = 10
TASK_ID_MAX_LENGTH = MAX_TASK_ID_LENGTH


@dataclass(frozen=True)
class YamlTaskEntry:
    """One valid entry of a task file, with its attachments already validated."""

    task_id: str
    class_name: str
    #: The validated attachments as JSON, by alias (``model_dump(mode="json", by_alias=True)``).
    attachments: dict[str, Any]
    is_persistent: bool = False
    name: str | None = None
    description: str | None = None
    priority: int = 0
    dependencies: list[str] | None = None
    #: 1-based line of the task id in the file, when known.
    line: int | None = None

    def to_task(self, executor: str, mode: ModeEnum) -> Task:
        """The task record for this entry, owned by ``executor``."""
        return Task(
            id=self.task_id,
            class_name=self.class_name,
            source="YAML",
            name=self.name,
            description=self.description,
            executor=executor,
            dependencies=list(self.dependencies) if self.dependencies is not None else None,
            mode=mode,
            is_persistent=self.is_persistent,
            priority=self.priority,
            attachments=copy.deepcopy(self.attachments),
        )


def load_task_file(
    path: str | Path, models: Mapping[str, type[BaseModel]]
) -> tuple[dict[str, YamlTaskEntry], list[TaskSourceError]]:
    """Read a task file; return the good entries and one error per problem found.

    ``models`` maps each registered worker class name to its attachments model. Nothing in the
    file's content makes this raise: a file that cannot be read or parsed gives one error and no
    entries, and a bad entry is left out while the others are still returned.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, [source_error(path, "file not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [source_error(path, f"cannot read the file: {exc}")]
    try:
        doc = load_yaml(new_yaml(), path, text)
    except TaskSourceError as exc:  # not YAML, or aliases that would expand too far
        return {}, [exc]

    if doc is None:
        return {}, [source_error(path, f"the file is empty; expected a top-level {ROOT_KEY!r} mapping")]
    if not isinstance(doc, Mapping):
        return {}, [
            source_error(
                path,
                f"the top level must be a mapping with a {ROOT_KEY!r} key, got {kind_of(doc)}",
                line=1,
            )
        ]
    if ROOT_KEY not in doc:
        near = difflib.get_close_matches(ROOT_KEY, [k for k in doc if isinstance(k, str)], n=1, cutoff=0.6)
        hint = f" (found {near[0]!r}: misspelt?)" if near else ""
        return {}, [
            source_error(path, f"no top-level {ROOT_KEY!r} key{hint}", line=key_line(doc, near[0]) if near else 1)
        ]
    workers = doc[ROOT_KEY]
    if workers is None:  # every entry commented out: a valid, empty file
        return {}, []
    if not isinstance(workers, Mapping):
        return {}, [
            source_error(
                path,
                f"{ROOT_KEY!r} must be a mapping of task id to entry, got {kind_of(workers)}",
                line=key_line(doc, ROOT_KEY),
            )
        ]

    entries: dict[str, YamlTaskEntry] = {}
    errors: list[TaskSourceError] = []
    for raw_id, raw_entry in workers.items():
        line = key_line(workers, raw_id)
        if not isinstance(raw_id, str) or not raw_id.strip():
            errors.append(source_error(path, "a task id must be a non-empty string", task_id=str(raw_id), line=line))
            continue
        id_problem = task_id_problem(raw_id)  # the API's rule: the same ids everywhere
        if id_problem is not None:
            errors.append(source_error(path, id_problem, task_id=raw_id, line=line))
            continue
        entry, entry_errors = _parse_entry(path, raw_id, raw_entry, line, models)
        errors.extend(entry_errors)
        if entry is not None:
            entries[raw_id] = entry
    return entries, errors


@dataclass
class _EntryProblems:
    """The problems of one entry, each naming the file, the task id and a line (the field's if known)."""

    path: Path
    task_id: str
    line: int | None
    errors: list[TaskSourceError] = field(default_factory=list)

    def add(self, what: str, field: str | None = None, at: int | None = None) -> None:
        self.errors.append(source_error(self.path, what, task_id=self.task_id, field=field, line=at or self.line))


def _parse_entry(
    path: Path, task_id: str, raw: Any, line: int | None, models: Mapping[str, type[BaseModel]]
) -> tuple[YamlTaskEntry | None, list[TaskSourceError]]:
    """The entry ``raw`` of ``task_id`` checked field by field, in the order the problems are reported."""
    report = _EntryProblems(path, task_id, line)
    if not isinstance(raw, Mapping):
        report.add(f"an entry must be a mapping with at least 'className', got {kind_of(raw)}")
        return None, report.errors
    _check_keys(raw, report)
    model = _worker_model(raw, models, report)
    _check_flags(raw, report)
    _check_texts(raw, report)
    attachments_node = _attachments_node(raw, report)
    if report.errors or model is None or attachments_node is None:
        return None, report.errors
    attachments = _validated_attachments(model, attachments_node, key_line(raw, "attachments"), report)
    if attachments is None:
        return None, report.errors
    return _entry(task_id, raw, attachments, line), report.errors


def _check_keys(raw: Mapping[Any, Any], report: _EntryProblems) -> None:
    for key in raw:
        if key not in ENTRY_KEYS:
            hint = did_you_mean(str(key), ENTRY_KEYS)
            report.add(
                f"unknown key{hint} (allowed: {', '.join(ENTRY_KEYS)})",
                field=str(key),
                at=key_line(raw, key),
            )


def _worker_model(
    raw: Mapping[Any, Any], models: Mapping[str, type[BaseModel]], report: _EntryProblems
) -> type[BaseModel] | None:
    """The attachments model of the entry's ``className``, or None (reported) when there is none."""
    class_name = raw.get("className")
    if "className" not in raw:
        report.add("missing; it names the worker class that runs the task", field="className")
    elif not isinstance(class_name, str) or not class_name.strip():
        report.add(f"must be a non-empty string, got {show_value(class_name)}", "className", key_line(raw, "className"))
    elif class_name not in models:
        known = ", ".join(sorted(models)) or "none"
        report.add(
            f"no worker class {class_name!r} is registered here (registered: {known})",
            "className",
            key_line(raw, "className"),
        )
    else:
        return models[class_name]
    return None


def _check_flags(raw: Mapping[Any, Any], report: _EntryProblems) -> None:
    """``isPersistent`` and ``priority``."""
    is_persistent = raw.get("isPersistent", False)
    if not is_bool(is_persistent):
        report.add(
            f"must be true or false, got {show_value(is_persistent)}",
            "isPersistent",
            key_line(raw, "isPersistent"),
        )
    priority = raw.get("priority", 0)
    if is_bool(priority) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        report.add(
            f"must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}, got {show_value(priority)}",
            "priority",
            key_line(raw, "priority"),
        )


def _check_texts(raw: Mapping[Any, Any], report: _EntryProblems) -> None:
    """``name``, ``description`` and ``dependencies``."""
    for key in ("name", "description"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            report.add(f"must be a string, got {show_value(value)}", key, key_line(raw, key))
    dependencies = raw.get("dependencies")
    if dependencies is not None and (
        not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies)
    ):
        report.add(
            f"must be a list of task ids, got {show_value(dependencies)}",
            "dependencies",
            key_line(raw, "dependencies"),
        )


def _attachments_node(raw: Mapping[Any, Any], report: _EntryProblems) -> Mapping[Any, Any] | None:
    """The entry's ``attachments`` mapping (empty when left out), or None (reported) when it is not one."""
    node = raw.get("attachments")
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        report.add(f"must be a mapping, got {show_value(node)}", "attachments", key_line(raw, "attachments"))
        return None
    return node


def _validated_attachments(
    model: type[BaseModel], node: Mapping[Any, Any], attachments_line: int | None, report: _EntryProblems
) -> dict[str, Any] | None:
    """The attachments validated by ``model`` as JSON by alias, or None (reported) when they do not validate."""
    try:
        validated = model.model_validate(to_plain(node), by_alias=True, by_name=True)
        return validated.model_dump(mode="json", by_alias=True)
    except ValidationError as exc:
        report.add(
            _validation_report(exc, model, node, attachments_line or report.line),
            "attachments",
            attachments_line,
        )
    except Exception as exc:  # a custom validator or serializer raising something else
        report.add(
            f"{model.__name__} rejected them: {type(exc).__name__}: {exc}",
            "attachments",
            attachments_line,
        )
    return None


def _entry(task_id: str, raw: Mapping[Any, Any], attachments: dict[str, Any], line: int | None) -> YamlTaskEntry:
    """The entry of a ``raw`` mapping that passed every check."""
    name, description, dependencies = raw.get("name"), raw.get("description"), raw.get("dependencies")
    return YamlTaskEntry(
        task_id=task_id,
        class_name=str(raw.get("className")),
        attachments=attachments,
        is_persistent=bool(raw.get("isPersistent", False)),
        name=None if name is None else str(name),
        description=None if description is None else str(description),
        priority=int(raw.get("priority", 0)),
        dependencies=[str(d) for d in dependencies] if dependencies is not None else None,
        line=line,
    )


def _validation_report(
    exc: ValidationError, model: type[BaseModel], node: Mapping[Any, Any], fallback_line: int | None
) -> str:
    """One line per pydantic error: where (line, path by alias) and what."""
    details = exc.errors(include_url=False)
    count = f"{len(details)} error" + ("s" if len(details) != 1 else "")
    lines = [f"do not validate against {model.__name__} ({count}):"]
    for detail in details:
        alias_path, line = _walk_loc(model, node, detail.get("loc", ()))
        where = ".".join(alias_path) or "(whole model)"
        line = line or fallback_line
        at = f"line {line}: " if line else ""
        got = "" if detail.get("type") == "missing" else f" (got {show_value(detail.get('input'))})"
        lines.append(f"  - {at}{where}: {detail.get('msg', 'invalid')}{got}")
    return "\n".join(lines)


def _walk_loc(model: type[BaseModel] | None, node: Any, loc: Iterable[Any]) -> tuple[list[str], int | None]:
    """Follow a pydantic error location: its path spelled by alias, and the deepest line found."""
    parts: list[str] = []
    line: int | None = None
    for part in loc:
        field_info = None
        if isinstance(part, str) and model is not None:
            field_info = find_field(model, part)
        if field_info is not None:
            field_name, info = field_info
            alias = info.alias or field_name
            parts.append(alias)
            spellings = [part, alias, field_name]
            model = _model_in(info.annotation)
        else:
            parts.append(str(part))
            spellings = [part]
        found = False
        if isinstance(node, Mapping):
            for key in spellings:
                if key in node:
                    line = key_line(node, key) or line
                    node = node[key]
                    found = True
                    break
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            line = item_line(node, part) or line
            node = node[part]
            found = True
        if not found:
            node = None
    return parts, line


def _model_in(annotation: Any, depth: int = 0) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``Model``, ``Model | None``, ``list[Model]``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if depth > 4:
        return None
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg, depth + 1)
        if found is not None:
            return found
    return None
