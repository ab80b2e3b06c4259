"""Writing attachment values that workers changed back into the task file, as a person would.

Only the values that changed are touched: comments, key order, blank lines and quoting stay as
they were (with the help of :mod:`.layout`), the result is checked to say exactly what was
meant before anything is written, and the write is atomic so a crash or a concurrent reader
never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString

from skalds.errors import TaskSourceError
from skalds.taskfile.common import (
    ROOT_KEY,
    dump_yaml,
    find_field,
    is_bool,
    is_sequence,
    key_line,
    kind_of,
    load_yaml,
    read_exact,
    source_error,
    to_plain,
)
from skalds.taskfile.layout import (
    CANNOT_KEEP_LAYOUT,
    attach_to_holders,
    attach_trailing,
    detach_from_holders,
    detach_trailing,
    fitting_yaml,
    holders_at,
    transplant,
)

_ODD_BREAKS = frozenset("\x85\u2028\u2029")
_INDICATORS = frozenset("?:-,[]{}#&*!|>'\"%@`")


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
    original = read_exact(target)
    yaml, baseline = fitting_yaml(target, original)
    doc = load_yaml(yaml, target, original)

    workers = doc.get(ROOT_KEY) if isinstance(doc, Mapping) else None
    if not isinstance(workers, CommentedMap) or task_id not in workers:
        return False
    entry = workers[task_id]
    if not isinstance(entry, CommentedMap):
        raise source_error(target, "the entry is not a mapping; cannot write attachments back", task_id=task_id)

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
        raise source_error(
            target,
            f"must be a mapping to write back into, got {kind_of(node)}",
            task_id=task_id,
            field="attachments",
            line=key_line(entry, "attachments"),
        )
    else:
        keys = _match_keys(node, attachments, model)
        if not _update_mapping(node, {keys[k]: v for k, v in attachments.items()}, remove_missing=False):
            return False

    newline = "\r\n" if "\r\n" in original else "\n"
    changed = dump_yaml(yaml, doc, newline)
    text = changed if baseline == original else transplant(target, original, baseline, changed)
    if text == original:
        return False
    if not _says(yaml, target, original, text, task_id, {keys[k]: v for k, v in attachments.items()}):
        # never write a file that does not say what we meant
        raise source_error(target, CANNOT_KEEP_LAYOUT, task_id=task_id, field="attachments")
    _atomic_write(target, text)
    return True


def _says(yaml: YAML, path: Path, original: str, text: str, task_id: str, values: Mapping[str, Any]) -> bool:
    """Whether ``text`` holds exactly ``original`` with the new attachment ``values``.

    Compared on the data, not on ruamel's own output: ruamel writes some floats it read back
    with a digit less, and those lines are kept as written.
    """
    try:
        expected = to_plain(load_yaml(yaml, path, original))
        entry = expected[ROOT_KEY][task_id]
        if entry.get("attachments") is None:
            entry["attachments"] = {}
        for key, value in values.items():
            entry["attachments"][key] = to_plain(value)
        return _equal(to_plain(load_yaml(yaml, path, text)), expected)
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
        found = find_field(model, key)
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
    elif isinstance(old, CommentedSeq) and is_sequence(value) and value:
        _update_sequence(old, value)
    else:
        # What followed the old value (blank lines, the next key's comments) must follow the new one.
        trailing = detach_from_holders(holders_at(container, key))
        item = container.ca.items.get(key) if isinstance(container, CommentedMap) else None
        if item and len(item) > 3:
            item[3] = None  # comments that opened the old nested value: they went with it
            if value and (isinstance(value, Mapping) or is_sequence(value)):
                # A key's end-of-line comment before a new block value makes ruamel misplace later
                # items; the comment described the old value anyway.
                item[2] = None
        if isinstance(old, ScalarString) and isinstance(value, str):
            # keep the quoting style, unless the new text needs double quotes
            container[key] = _to_node(value) if _needs_double_quotes(value) else type(old)(value)
        else:
            container[key] = _to_node(value)
        attach_to_holders(holders_at(container, key), trailing)


def _update_sequence(target: CommentedSeq, new: Sequence[Any]) -> None:
    for index, value in enumerate(new[: len(target)]):
        if not _same(target[index], value):
            _assign(target, index, value)
    if len(new) > len(target):
        rest = detach_trailing(target)
        for value in new[len(target) :]:
            target.append(_to_node(value))
        attach_trailing(target, rest)
    elif len(new) < len(target):
        rest = detach_trailing(target)
        del target[len(new) :]
        attach_trailing(target, rest)


def _append_key(target: CommentedMap, key: Any, value: Any) -> None:
    """Add a key at the end of a mapping, before the comments and blank lines that follow it."""
    rest = detach_trailing(target)
    target[key] = value
    attach_trailing(target, rest)


def _delete_key(target: CommentedMap, key: Any) -> None:
    """Remove a key; if it was the last one, what followed it moves to the new last key."""
    keys = list(target)
    rest = detach_trailing(target) if keys and keys[-1] == key else None
    del target[key]
    target.ca.items.pop(key, None)
    attach_trailing(target, rest)


def _to_node(value: Any) -> Any:
    """A new value as ruamel nodes, so comments can be hung on it and it is written safely."""
    if isinstance(value, Mapping) and not isinstance(value, CommentedMap):
        return CommentedMap((_to_node(k), _to_node(v)) for k, v in value.items())
    if is_sequence(value) and not isinstance(value, CommentedSeq):
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
    if is_bool(old) or is_bool(new):
        return is_bool(old) and is_bool(new) and bool(old) == bool(new)
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return set(old) == set(new) and all(_same(old[k], new[k]) for k in old)
    if is_sequence(old) and is_sequence(new):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new, strict=True))
    if isinstance(old, int | float) and isinstance(new, int | float):
        same_number = old == new or (old != old and new != new)  # NaN is NaN here
        return isinstance(old, float) == isinstance(new, float) and same_number
    if isinstance(old, str) and isinstance(new, str):
        return str(old) == str(new)
    if old is None or new is None:
        return old is new
    return type(old) is type(new) and bool(old == new)


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
