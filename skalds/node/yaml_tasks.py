"""Edge skalds take their tasks from a YAML file that people write and edit by hand.

Because a person owns the file, loading it must never blow up on one bad entry: every problem
is reported with the file, task id, field and line so it can be fixed where it was typed, and
the good entries still run. Because workers may also *update* their attachments at run time,
the file is edited the way a careful person would: only the values that changed are touched,
comments, key order, blank lines and quoting stay as they were, and the write is atomic so a
crash or a concurrent reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import io
import itertools
import math
import os
import stat
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarfloat import ScalarFloat
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString

from skalds.errors import TaskSourceError
from skalds.model.task import ModeEnum, Task

#: The top-level key that holds the task entries.
ROOT_KEY = "TaskWorkers"
#: Every key an entry may have; anything else is reported (usually a typo).
ENTRY_KEYS = ("className", "isPersistent", "attachments", "name", "description", "priority", "dependencies")
_ODD_BREAKS = frozenset("\x85\u2028\u2029")
_INDICATORS = frozenset("?:-,[]{}#&*!|>'\"%@`")
PRIORITY_MIN = 0
PRIORITY_MAX = 10
TASK_ID_MAX_LENGTH = 200
_CANNOT_KEEP_LAYOUT = (
    "cannot write attachments back faithfully (the values or the layout of other parts would change); "
    "the file is left as it was"
)


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


def file_signature(path: str | Path) -> tuple[int, int, int] | None:
    """``(st_mtime_ns, st_size, st_ino)`` of ``path``, or ``None`` when it cannot be stat'ed.

    Pollers compare signatures to notice that someone changed the file. The inode is part of it
    because editors (and :func:`write_back_attachments`) replace the file rather than rewrite it.
    A caller that writes the file itself (write-back) must record the signature right after its
    write, so that the next poll does not mistake its own write for an outside change.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# --------------------------------------------------------------------------------------------
# Loading


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
        return {}, [_problem(path, "file not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [_problem(path, f"cannot read the file: {exc}")]
    try:
        doc = _new_yaml().load(text)
    except MarkedYAMLError as exc:
        return {}, [_parse_problem(path, exc)]
    except Exception as exc:  # a constructor can fail in odd ways (bad dates...): still bad content
        return {}, [_problem(path, f"not valid YAML: {exc}")]

    if doc is None:
        return {}, [_problem(path, f"the file is empty; expected a top-level {ROOT_KEY!r} mapping")]
    if not isinstance(doc, Mapping):
        return {}, [
            _problem(
                path,
                f"the top level must be a mapping with a {ROOT_KEY!r} key, got {_kind(doc)}",
                line=1,
            )
        ]
    if ROOT_KEY not in doc:
        near = difflib.get_close_matches(ROOT_KEY, [k for k in doc if isinstance(k, str)], n=1, cutoff=0.6)
        hint = f" (found {near[0]!r}: misspelt?)" if near else ""
        return {}, [_problem(path, f"no top-level {ROOT_KEY!r} key{hint}", line=_key_line(doc, near[0]) if near else 1)]
    workers = doc[ROOT_KEY]
    if workers is None:  # every entry commented out: a valid, empty file
        return {}, []
    if not isinstance(workers, Mapping):
        return {}, [
            _problem(
                path,
                f"{ROOT_KEY!r} must be a mapping of task id to entry, got {_kind(workers)}",
                line=_key_line(doc, ROOT_KEY),
            )
        ]

    entries: dict[str, YamlTaskEntry] = {}
    errors: list[TaskSourceError] = []
    for raw_id, raw_entry in workers.items():
        line = _key_line(workers, raw_id)
        if not isinstance(raw_id, str) or not raw_id.strip():
            errors.append(_problem(path, "a task id must be a non-empty string", task_id=str(raw_id), line=line))
            continue
        if len(raw_id) > TASK_ID_MAX_LENGTH:
            errors.append(
                _problem(
                    path,
                    f"a task id must be at most {TASK_ID_MAX_LENGTH} characters",
                    task_id=raw_id,
                    line=line,
                )
            )
            continue
        entry, entry_errors = _parse_entry(path, raw_id, raw_entry, line, models)
        errors.extend(entry_errors)
        if entry is not None:
            entries[raw_id] = entry
    return entries, errors


def _parse_entry(
    path: Path, task_id: str, raw: Any, line: int | None, models: Mapping[str, type[BaseModel]]
) -> tuple[YamlTaskEntry | None, list[TaskSourceError]]:
    errors: list[TaskSourceError] = []

    def problem(what: str, field: str | None = None, at: int | None = None) -> None:
        errors.append(_problem(path, what, task_id=task_id, field=field, line=at or line))

    if not isinstance(raw, Mapping):
        problem(f"an entry must be a mapping with at least 'className', got {_kind(raw)}")
        return None, errors

    for key in raw:
        if key not in ENTRY_KEYS:
            hint = _did_you_mean(str(key), ENTRY_KEYS)
            problem(
                f"unknown key{hint} (allowed: {', '.join(ENTRY_KEYS)})",
                field=str(key),
                at=_key_line(raw, key),
            )

    model: type[BaseModel] | None = None
    class_name = raw.get("className")
    if "className" not in raw:
        problem("missing; it names the worker class that runs the task", field="className")
    elif not isinstance(class_name, str) or not class_name.strip():
        problem(f"must be a non-empty string, got {_show(class_name)}", "className", _key_line(raw, "className"))
    elif class_name not in models:
        known = ", ".join(sorted(models)) or "none"
        problem(
            f"no worker class {class_name!r} is registered here (registered: {known})",
            "className",
            _key_line(raw, "className"),
        )
    else:
        model = models[class_name]

    is_persistent = raw.get("isPersistent", False)
    if not _is_bool(is_persistent):
        problem(
            f"must be true or false, got {_show(is_persistent)}",
            "isPersistent",
            _key_line(raw, "isPersistent"),
        )

    priority = raw.get("priority", 0)
    if _is_bool(priority) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        problem(
            f"must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}, got {_show(priority)}",
            "priority",
            _key_line(raw, "priority"),
        )

    texts: dict[str, str | None] = {}
    for key in ("name", "description"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            problem(f"must be a string, got {_show(value)}", key, _key_line(raw, key))
        texts[key] = None if value is None else str(value)

    dependencies = raw.get("dependencies")
    if dependencies is not None and (
        not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies)
    ):
        problem(
            f"must be a list of task ids, got {_show(dependencies)}",
            "dependencies",
            _key_line(raw, "dependencies"),
        )

    attachments_node = raw.get("attachments")
    attachments_line = _key_line(raw, "attachments")
    if attachments_node is None:
        attachments_node = {}
    elif not isinstance(attachments_node, Mapping):
        problem(f"must be a mapping, got {_show(attachments_node)}", "attachments", attachments_line)
        attachments_node = None

    if errors or model is None or attachments_node is None:
        return None, errors

    try:
        validated = model.model_validate(_plain(attachments_node), by_alias=True, by_name=True)
        attachments = validated.model_dump(mode="json", by_alias=True)
    except ValidationError as exc:
        problem(
            _validation_report(exc, model, attachments_node, attachments_line or line),
            "attachments",
            attachments_line,
        )
        return None, errors
    except Exception as exc:  # a custom validator or serializer raising something else
        problem(
            f"{model.__name__} rejected them: {type(exc).__name__}: {exc}",
            "attachments",
            attachments_line,
        )
        return None, errors

    return (
        YamlTaskEntry(
            task_id=task_id,
            class_name=str(class_name),
            attachments=attachments,
            is_persistent=bool(is_persistent),
            name=texts["name"],
            description=texts["description"],
            priority=int(priority),
            dependencies=[str(d) for d in dependencies] if dependencies is not None else None,
            line=line,
        ),
        errors,
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
        got = "" if detail.get("type") == "missing" else f" (got {_show(detail.get('input'))})"
        lines.append(f"  - {at}{where}: {detail.get('msg', 'invalid')}{got}")
    return "\n".join(lines)


def _walk_loc(model: type[BaseModel] | None, node: Any, loc: Iterable[Any]) -> tuple[list[str], int | None]:
    """Follow a pydantic error location: its path spelled by alias, and the deepest line found."""
    parts: list[str] = []
    line: int | None = None
    for part in loc:
        field_info = None
        if isinstance(part, str) and model is not None:
            field_info = _find_field(model, part)
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
                    line = _key_line(node, key) or line
                    node = node[key]
                    found = True
                    break
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            line = _item_line(node, part) or line
            node = node[part]
            found = True
        if not found:
            node = None
    return parts, line


def _find_field(model: type[BaseModel], key: str) -> tuple[str, Any] | None:
    fields = model.model_fields
    if key in fields:
        return key, fields[key]
    for name, info in fields.items():
        if info.alias == key:
            return name, info
    return None


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


# --------------------------------------------------------------------------------------------
# Write-back


def write_back_attachments(
    path: str | Path,
    task_id: str,
    attachments: Mapping[str, Any],
    *,
    model: type[BaseModel] | None = None,
) -> bool:
    """Store new attachment values of one entry in the file; return whether the file changed.

    This is a partial update: keys of ``attachments`` that exist get their value changed in
    place (position and comments kept), new keys are appended, and keys not mentioned are left
    alone. Nested mappings and lists are complete values and are replaced (still in place).
    Everything outside the changed values stays byte-identical. With ``model``, a key given by
    alias also matches the same field written by its field name (and the other way round).

    Returns ``False``, without touching the file, when ``task_id`` is not in the file or when no
    value would change. The write is atomic (temporary file in the same directory, then
    :func:`os.replace`) and keeps the file's mode. Callers that poll the file should record
    :func:`file_signature` right after a ``True`` return.

    Raises :class:`TaskSourceError` when the file cannot be read or parsed, when the entry or its
    attachments is not a mapping, or when the change cannot be made without reformatting other
    parts of the file.
    """
    target = Path(os.path.realpath(path))
    original = _read_exact(target)
    yaml, baseline = _fitting_yaml(target, original)
    doc = _load(yaml, target, original)

    workers = doc.get(ROOT_KEY) if isinstance(doc, Mapping) else None
    if not isinstance(workers, CommentedMap) or task_id not in workers:
        return False
    entry = workers[task_id]
    if not isinstance(entry, CommentedMap):
        raise _problem(target, "the entry is not a mapping; cannot write attachments back", task_id=task_id)

    node = entry.get("attachments")
    keys: dict[str, Any] = {key: key for key in attachments}
    if node is None:
        if not attachments:
            return False
        node = _to_node(dict(attachments))  # built whole, so what followed the entry stays below it
        if "attachments" in entry:
            entry["attachments"] = node
        else:
            _append_key(entry, "attachments", node)
    elif not isinstance(node, CommentedMap):
        raise _problem(
            target,
            f"must be a mapping to write back into, got {_kind(node)}",
            task_id=task_id,
            field="attachments",
            line=_key_line(entry, "attachments"),
        )
    else:
        keys = _match_keys(node, attachments, model)
        if not _update_mapping(node, {keys[k]: v for k, v in attachments.items()}, remove_missing=False):
            return False

    newline = "\r\n" if "\r\n" in original else "\n"
    changed = _dump(yaml, doc, newline)
    text = changed if baseline == original else _transplant(target, original, baseline, changed)
    if text == original:
        return False
    if not _says(yaml, target, original, text, task_id, {keys[k]: v for k, v in attachments.items()}):
        # never write a file that does not say what we meant
        raise _problem(target, _CANNOT_KEEP_LAYOUT, task_id=task_id, field="attachments")
    _atomic_write(target, text)
    return True


def _says(yaml: YAML, path: Path, original: str, text: str, task_id: str, values: Mapping[str, Any]) -> bool:
    """Whether ``text`` holds exactly ``original`` with the new attachment ``values``.

    Compared on the data, not on ruamel's own output: ruamel writes some floats it read back
    with a digit less, and those lines are kept as written.
    """
    try:
        expected = _plain(_load(yaml, path, original))
        entry = expected[ROOT_KEY][task_id]
        if entry.get("attachments") is None:
            entry["attachments"] = {}
        for key, value in values.items():
            entry["attachments"][key] = _plain(value)
        return _equal(_plain(_load(yaml, path, text)), expected)
    except (TaskSourceError, LookupError, TypeError, AttributeError):
        return False


def _equal(a: Any, b: Any) -> bool:
    """``==`` on plain values, but ``true`` is not ``1``, ``1`` is not ``1.0`` and NaN is NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, float) != isinstance(b, float):
        return type(a) is type(b) and a == b
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return bool(a == b)


def _match_keys(
    node: Mapping[Any, Any], attachments: Mapping[str, Any], model: type[BaseModel] | None
) -> dict[str, Any]:
    """For each given key, the key to write: an existing spelling of the same field if any."""
    keys: dict[str, Any] = {}
    for key in attachments:
        keys[key] = key
        if key in node or model is None:
            continue
        found = _find_field(model, key)
        if found is None:
            continue
        name, info = found
        for spelling in (info.alias, name):
            if spelling and spelling in node:
                keys[key] = spelling
                break
    return keys


def _update_mapping(target: CommentedMap, new: Mapping[Any, Any], *, remove_missing: bool) -> bool:
    changed = False
    for key, value in new.items():
        if key not in target:
            _append_key(target, key, _to_node(value))
            changed = True
        elif not _same(target[key], value):
            _assign(target, key, value)
            changed = True
    if remove_missing:
        for key in [k for k in target if k not in new]:
            _delete_key(target, key)
            changed = True
    return changed


def _assign(container: CommentedMap | CommentedSeq, key: Any, value: Any) -> None:
    """Give ``container[key]`` a new value, editing nested structures in place."""
    old = container[key]
    # Nested values are edited in place, unless they end empty: then the lines that follow them
    # have no last item to hang on, and the replacement below moves them to the key.
    if isinstance(old, CommentedMap) and isinstance(value, Mapping) and value:
        _update_mapping(old, value, remove_missing=True)
    elif isinstance(old, CommentedSeq) and _is_sequence(value) and value:
        _update_sequence(old, value)
    else:
        # What followed the old value (blank lines, the next key's comments) must follow the new one.
        trailing = _detach(_holders_at(container, key))
        item = container.ca.items.get(key) if isinstance(container, CommentedMap) else None
        if item and len(item) > 3:
            item[3] = None  # comments that opened the old nested value: they went with it
            if value and (isinstance(value, Mapping) or _is_sequence(value)):
                # A key's end-of-line comment before a new block value makes ruamel misplace later
                # items; the comment described the old value anyway.
                item[2] = None
        if isinstance(old, ScalarString) and isinstance(value, str):
            # keep the quoting style, unless the new text needs double quotes
            container[key] = _to_node(value) if _needs_double_quotes(value) else type(old)(value)
        else:
            container[key] = _to_node(value)
        _attach(_holders_at(container, key), trailing)


def _update_sequence(target: CommentedSeq, new: Sequence[Any]) -> None:
    for index, value in enumerate(new[: len(target)]):
        if not _same(target[index], value):
            _assign(target, index, value)
    if len(new) > len(target):
        rest = _detach_trailing(target)
        for value in new[len(target) :]:
            target.append(_to_node(value))
        _attach_trailing(target, rest)
    elif len(new) < len(target):
        rest = _detach_trailing(target)
        del target[len(new) :]
        _attach_trailing(target, rest)


def _append_key(target: CommentedMap, key: Any, value: Any) -> None:
    """Add a key at the end of a mapping, before the comments and blank lines that follow it."""
    rest = _detach_trailing(target)
    target[key] = value
    _attach_trailing(target, rest)


def _delete_key(target: CommentedMap, key: Any) -> None:
    """Remove a key; if it was the last one, what followed it moves to the new last key."""
    keys = list(target)
    rest = _detach_trailing(target) if keys and keys[-1] == key else None
    del target[key]
    target.ca.items.pop(key, None)
    _attach_trailing(target, rest)


@dataclass(frozen=True)
class _Trailing:
    """Lines that follow a node's last value, and a comment token to carry them."""

    text: str
    template: Any


def _last_holders(node: Any) -> list[tuple[Any, Any, int]]:
    """(container, key, comment slot) from ``node``'s last item down to its deepest last item."""
    if not isinstance(node, CommentedMap | CommentedSeq) or not len(node):
        return []
    last: Any = next(reversed(node)) if isinstance(node, CommentedMap) else len(node) - 1
    return _holders_at(node, last)


def _holders_at(container: Any, key: Any) -> list[tuple[Any, Any, int]]:
    """(container, key, comment slot) from ``container[key]`` down to its deepest last item."""
    slot = 2 if isinstance(container, CommentedMap) else 0
    return [(container, key, slot), *_last_holders(container[key])]


def _detach_trailing(node: Any) -> _Trailing | None:
    """Cut the lines that ruamel keeps after a node's last value (blank lines, comments).

    ruamel stores them in the comment of the deepest last item, so anything appended after that
    item would otherwise land below them. The item keeps its own end-of-line comment.
    """
    return _detach(_last_holders(node))


def _attach_trailing(node: Any, trailing: _Trailing | None) -> None:
    """Put lines cut by :func:`_detach_trailing` back after ``node``'s (new) last value."""
    _attach(_last_holders(node), trailing)


def _detach(holders: list[tuple[Any, Any, int]]) -> _Trailing | None:
    for container, key, slot in reversed(holders):
        text = ""
        template = None
        item = container.ca.items.get(key)
        token = item[slot] if item and len(item) > slot else None
        if token is not None:
            value: str = token.value
            cut = value.find("\n") + 1
            if 0 < cut < len(value):
                token.value = value[:cut]
                text, template = value[cut:], token
        # After a null last value, ruamel keeps the following lines in the container's end list.
        end = getattr(container.ca, "end", None)
        if end and _is_last(container, key):
            text += "".join(_comment_line(t) for t in end)
            template = template or end[0]
            container.ca.end = []
        if template is not None:
            return _Trailing(text, template)
        if token is not None:
            return None
    return None


def _is_last(container: Any, key: Any) -> bool:
    if isinstance(container, CommentedMap):
        return bool(len(container)) and next(reversed(container)) == key
    return bool(key == len(container) - 1)


def _comment_line(token: Any) -> str:
    value: str = token.value
    if value.startswith("#"):
        column = getattr(getattr(token, "start_mark", None), "column", 0) or 0
        return " " * column + value
    return value


def _attach(holders: list[tuple[Any, Any, int]], trailing: _Trailing | None) -> None:
    if trailing is None or not trailing.text or not holders:
        return
    container, key, slot = holders[-1]
    item = container.ca.items.get(key)
    token = item[slot] if item and len(item) > slot else None
    if token is not None:
        token.value = token.value + trailing.text
        return
    new_token = copy.copy(trailing.template)  # a token needs a start mark to be written
    new_token.value = "\n" + trailing.text
    if item is None:
        item = [None, None, None, None]
        container.ca.items[key] = item
    item[slot] = new_token


def _to_node(value: Any) -> Any:
    """A new value as ruamel nodes, so comments can be hung on it and it is written safely."""
    if isinstance(value, Mapping) and not isinstance(value, CommentedMap):
        return CommentedMap((_to_node(k), _to_node(v)) for k, v in value.items())
    if _is_sequence(value) and not isinstance(value, CommentedSeq):
        return CommentedSeq(_to_node(v) for v in value)
    if isinstance(value, str) and not isinstance(value, ScalarString) and _needs_double_quotes(value):
        return DoubleQuotedScalarString(value)
    return value


def _needs_double_quotes(text: str) -> bool:
    """Strings that ruamel may write in a form that reads back differently, or not at all.

    It leaves NEL and the Unicode line separators unescaped, and mishandles some plain scalars
    that start with an indicator; double quotes escape everything.
    """
    if not text:
        return False
    if text[0] in _INDICATORS or text != text.strip():
        return True
    return any(ch in _ODD_BREAKS or unicodedata.category(ch).startswith("C") for ch in text)


def _same(old: Any, new: Any) -> bool:
    """Equal and of the same YAML kind (``1`` is not ``true``, ``1`` is not ``1.0``)."""
    if _is_bool(old) or _is_bool(new):
        return _is_bool(old) and _is_bool(new) and bool(old) == bool(new)
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return set(old) == set(new) and all(_same(old[k], new[k]) for k in old)
    if _is_sequence(old) and _is_sequence(new):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new, strict=True))
    if isinstance(old, int | float) and isinstance(new, int | float):
        same_number = old == new or (old != old and new != new)  # NaN is NaN here
        return isinstance(old, float) == isinstance(new, float) and same_number
    if isinstance(old, str) and isinstance(new, str):
        return str(old) == str(new)
    if old is None or new is None:
        return old is new
    return type(old) is type(new) and bool(old == new)


# --------------------------------------------------------------------------------------------
# Single entry


def single_entry_yaml(path: str | Path, task_id: str) -> str:
    """A task file holding only ``task_id``'s entry, with its comments, to ship one task alone.

    Raises :class:`TaskSourceError` when the file cannot be read or parsed or has no such entry.
    """
    target = Path(path)
    original = _read_exact(target)
    yaml, _ = _fitting_yaml(target, original)
    doc = _load(yaml, target, original)
    workers = doc.get(ROOT_KEY) if isinstance(doc, Mapping) else None
    if not isinstance(workers, CommentedMap) or task_id not in workers:
        raise _problem(target, "no such task in the file", task_id=task_id)
    expected = _plain(workers[task_id])

    text = _slice_entry(original, doc, workers, task_id)
    if text is not None:
        try:
            check = _new_yaml().load(text)
            if (
                isinstance(check, Mapping)
                and isinstance(check.get(ROOT_KEY), Mapping)
                and list(check[ROOT_KEY]) == [task_id]
                and _plain(check[ROOT_KEY][task_id]) == expected
            ):
                return text
        except Exception:  # the slice leaned on something outside it (an anchor...): dump instead
            pass

    for key in [k for k in doc if k != ROOT_KEY]:
        del doc[key]
    for key in [k for k in workers if k != task_id]:
        del workers[key]
    _trim_entry_trailing(workers, task_id)
    return _dump(yaml, doc, "\n").rstrip("\n") + "\n"


def _slice_entry(original: str, doc: CommentedMap, workers: CommentedMap, task_id: str) -> str | None:
    """The entry's lines cut from the file as written, or ``None`` if it is not in block style."""
    if workers.fa.flow_style() or doc.fa.flow_style():
        return None
    try:
        start, column = workers.lc.key(task_id)
    except (AttributeError, KeyError, TypeError):
        return None
    lines = original.splitlines(keepends=True)
    ids = list(workers)
    position = ids.index(task_id)
    if position + 1 < len(ids):
        end = workers.lc.key(ids[position + 1])[0]
    else:
        top = list(doc)
        after = top[top.index(ROOT_KEY) + 1 :]
        end = doc.lc.key(after[0])[0] if after else len(lines)

    # Comment lines right above the entry, at its indentation, are its heading.
    head = start
    while head > 0 and _is_comment_at(lines[head - 1], column):
        head -= 1
    body = lines[head:end]
    # Blank lines and comments at or left of the entry's column belong to what follows.
    while body and start - head < len(body) - 1 and _is_trailer(body[-1], column):
        body.pop()
    if not body:
        return None
    text = "".join(body)
    if not text.endswith("\n"):
        text += "\n"
    return f"{ROOT_KEY}:\n{text}"


def _is_comment_at(line: str, column: int) -> bool:
    stripped = line.lstrip(" ")
    return stripped.startswith("#") and len(line) - len(stripped) == column


def _is_trailer(line: str, column: int) -> bool:
    stripped = line.lstrip(" ")
    if not stripped.strip():
        return True
    return stripped.startswith("#") and len(line) - len(stripped) <= column


def _trim_entry_trailing(workers: CommentedMap, task_id: str) -> None:
    """Drop the blank lines and next-entry headings that ruamel attached to the entry's end."""
    rest = _detach_trailing(workers[task_id])
    if not rest:
        return
    try:
        column = workers.lc.key(task_id)[1]
    except (AttributeError, KeyError, TypeError):
        return
    kept: list[str] = []
    for line in rest.text.splitlines(keepends=True):
        if _is_trailer(line, column) and line.strip():
            break
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    _attach_trailing(workers[task_id], _Trailing("".join(kept), rest.template))


# --------------------------------------------------------------------------------------------
# YAML plumbing


class _Representer(RoundTripRepresenter):
    """ruamel's round-trip representer, writing new floats with all their digits."""


def _represent_float(representer: Any, value: float) -> Any:
    if value != value:
        text = ".nan"
    elif value in (math.inf, -math.inf):
        text = ".inf" if value > 0 else "-.inf"
    else:
        text = repr(value)  # shortest text that reads back as the same float
        mantissa, _, exponent = text.partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = mantissa + (f"e{exponent}" if exponent else "")
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _represent_scalar_float(representer: Any, value: Any) -> Any:
    """A float read from the file, in its own format unless that format loses digits."""
    node = RoundTripRepresenter.represent_scalar_float(representer, value)
    try:
        exact = float(str(node.value).replace("_", "")) == float(value)
    except ValueError:  # .inf, .nan
        exact = True
    return node if exact else _represent_float(representer, float(value))


_Representer.add_representer(float, _represent_float)
_Representer.add_representer(ScalarFloat, _represent_scalar_float)


def _new_yaml(mapping: int = 2, sequence: int = 2, offset: int = 0) -> YAML:
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold long lines that were not folded
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _indent_styles() -> list[tuple[int, int, int]]:
    styles: list[tuple[int, int, int]] = []
    for mapping in (2, 4, 3):
        for sequence, offset in (
            (2, 0),
            (4, 2),
            (mapping, 0),
            (mapping + 2, mapping),
            (mapping, mapping - 2),
        ):
            style = (mapping, sequence, offset)
            if style not in styles and offset <= sequence - 2:
                styles.append(style)
    return styles


def _fitting_yaml(path: Path, original: str) -> tuple[YAML, str]:
    """The indentation settings whose output best matches the file as written, and that output."""
    newline = "\r\n" if "\r\n" in original else "\n"
    best: tuple[float, YAML, str] | None = None
    for style in _indent_styles():
        yaml = _new_yaml(*style)
        dumped = _dump(yaml, _load(yaml, path, original), newline)
        if dumped == original:
            return yaml, dumped
        score = difflib.SequenceMatcher(
            None, dumped.splitlines(keepends=True), original.splitlines(keepends=True), autojunk=False
        ).ratio()
        if best is None or score > best[0]:
            best = (score, yaml, dumped)
    assert best is not None
    return best[1], best[2]


def _transplant(path: Path, original: str, baseline: str, changed: str) -> str:
    """Apply the line changes between ``baseline`` and ``changed`` to ``original``.

    ``baseline`` is how ruamel writes the untouched file; when that differs from the file (odd
    spacing, mixed indentation, a ``---`` line...), only the changed lines are carried over,
    shifted to the indentation the file uses there, so the rest keeps its exact bytes.
    """
    source = original.splitlines(keepends=True)
    base = baseline.splitlines(keepends=True)
    new = changed.splitlines(keepends=True)
    to_source: dict[int, int] = {}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, base, source, autojunk=False).get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            for k in range(i2 - i1):
                to_source[i1 + k] = j1 + k

    def mapped_shift(k: int) -> int:
        return _indent(source[to_source[k]]) - _indent(base[k])

    def shift_for(line: str, emitted: list[tuple[str, int]], replaced: range, before: int) -> int:
        """Indentation the file adds to ruamel's for ``line``: that of its nearest sibling or parent."""
        indent, item = _indent(line), _is_item(line)
        candidates = itertools.chain(
            reversed(emitted),
            ((base[k], mapped_shift(k)) for k in replaced if k in to_source),
            ((base[k], mapped_shift(k)) for k in range(before - 1, -1, -1) if k in to_source),
        )
        first = True
        for text, shift in candidates:
            if not _is_content(text):
                continue
            other = _indent(text)
            if other < indent or (
                other == indent and (_is_item(text) == item or (first and text.rstrip().endswith(":")))
            ):
                return shift
            first = False
        return 0

    edits: list[tuple[int, int, list[str]]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, base, new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i1 < i2:
            mapped = [to_source.get(i) for i in range(i1, i2)]
            first = mapped[0]
            if first is None or mapped != list(range(first, first + len(mapped))):
                raise _problem(path, _CANNOT_KEEP_LAYOUT)
            start, end = first, first + len(mapped)
        elif i1 - 1 in to_source:
            # Right after the line it follows: lines ruamel dropped (it loses a few comments) stay
            # below, with what they introduce.
            start = end = to_source[i1 - 1] + 1
        elif i1 in to_source:
            start = end = to_source[i1]
        elif i1 == 0:
            start = end = 0
        else:
            raise _problem(path, _CANNOT_KEEP_LAYOUT)
        emitted: list[tuple[str, int]] = []
        lines: list[str] = []
        for line in new[j1:j2]:
            shift = shift_for(line, emitted, range(i1, i2), i1)
            emitted.append((line, shift))
            lines.append(_reindent(line, shift))
        edits.append((start, end, lines))
    for start, end, lines in reversed(edits):
        source[start:end] = lines
    return "".join(source)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_item(line: str) -> bool:
    """Whether the line starts a block sequence item."""
    stripped = line.strip()
    return stripped == "-" or stripped.startswith("- ")


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _reindent(line: str, shift: int) -> str:
    if shift == 0 or not line.strip():
        return line
    if shift > 0:
        return " " * shift + line
    return line[min(-shift, _indent(line)) :]


def _read_exact(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise _problem(path, f"cannot read the file: {exc}") from exc


def _load(yaml: YAML, path: Path, text: str) -> Any:
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        raise _parse_problem(path, exc) from exc
    except Exception as exc:
        raise _problem(path, f"not valid YAML: {exc}") from exc


def _dump(yaml: YAML, doc: Any, newline: str) -> str:
    stream = io.StringIO()
    yaml.dump(doc, stream)
    text = stream.getvalue()
    return text.replace("\n", newline) if newline != "\n" else text


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step, keeping its permission bits."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    try:  # make the rename itself durable; not every platform can open a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------------------------
# Small helpers


def _problem(
    path: Path,
    what: str,
    *,
    task_id: str | None = None,
    field: str | None = None,
    line: int | None = None,
) -> TaskSourceError:
    """``<file>, line N: task 'X', field 'F': what is wrong`` (parts left out when unknown)."""
    where = str(path) + (f", line {line}" if line else "")
    subject = []
    if task_id is not None:
        subject.append(f"task {task_id!r}")
    if field is not None:
        subject.append(f"field {field!r}")
    message = f"{where}: " + (", ".join(subject) + ": " if subject else "") + what
    return TaskSourceError(message, task_id=task_id, field=field, line=line)


def _parse_problem(path: Path, exc: MarkedYAMLError) -> TaskSourceError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or str(exc)
    if mark is None:
        return _problem(path, f"not valid YAML: {problem}")
    return _problem(path, f"not valid YAML (column {mark.column + 1}): {problem}", line=mark.line + 1)


def _key_line(node: Any, key: Any) -> int | None:
    """1-based line of a mapping key, when ruamel recorded it."""
    try:
        return int(node.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def _item_line(node: Any, index: int) -> int | None:
    try:
        return int(node.lc.item(index)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | ScalarBoolean)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _plain(value: Any) -> Any:
    """ruamel's round-trip types turned into plain Python values."""
    if isinstance(value, Mapping):
        return {(_plain(k) if isinstance(k, str | int | float) else k): _plain(v) for k, v in value.items()}
    if _is_sequence(value):
        return [_plain(v) for v in value]
    if _is_bool(value):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, Mapping):
        return "a mapping"
    if _is_sequence(value):
        return "a list"
    return f"{type(value).__name__} {_show(value)}"


def _show(value: Any, limit: int = 60) -> str:
    text = repr(_plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in options}
        if word.lower() in lowered:
            matches = [lowered[word.lower()]]
    return f" (did you mean {matches[0]!r}?)" if matches else ""
