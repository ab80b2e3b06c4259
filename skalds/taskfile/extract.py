"""Cutting one entry out of a task file, with its comments, to ship that task on its own.

The entry's lines are taken from the file as written whenever they read back as the same entry;
otherwise (flow style, anchors defined elsewhere...) the entry is dumped alone by ruamel, without
the blank lines and next-entry headings ruamel would attach to its end.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from skalds.taskfile.common import ROOT_KEY, dump_yaml, load_yaml, new_yaml, read_exact, source_error, to_plain
from skalds.taskfile.layout import Trailing, attach_trailing, detach_trailing, fitting_yaml


def single_entry_yaml(path: str | Path, task_id: str) -> str:
    """A task file holding only ``task_id``'s entry, with its comments, to ship one task alone.

    Raises :class:`TaskSourceError` when the file cannot be read or parsed or has no such entry.
    """
    target = Path(path)
    original = read_exact(target)
    yaml, _ = fitting_yaml(target, original)
    doc = load_yaml(yaml, target, original)
    workers = doc.get(ROOT_KEY) if isinstance(doc, Mapping) else None
    if not isinstance(workers, CommentedMap) or task_id not in workers:
        raise source_error(target, "no such task in the file", task_id=task_id)
    expected = to_plain(workers[task_id])

    text = _slice_entry(original, doc, workers, task_id)
    if text is not None:
        try:
            check = new_yaml().load(text)
            if (
                isinstance(check, Mapping)
                and isinstance(check.get(ROOT_KEY), Mapping)
                and list(check[ROOT_KEY]) == [task_id]
                and to_plain(check[ROOT_KEY][task_id]) == expected
            ):
                return text
        except Exception:  # the slice leaned on something outside it (an anchor...): dump instead
            pass

    for key in [k for k in doc if k != ROOT_KEY]:
        del doc[key]
    for key in [k for k in workers if k != task_id]:
        del workers[key]
    _trim_entry_trailing(workers, task_id)
    return dump_yaml(yaml, doc, "\n").rstrip("\n") + "\n"


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
    rest = detach_trailing(workers[task_id])
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
    attach_trailing(workers[task_id], Trailing("".join(kept), rest.template))
