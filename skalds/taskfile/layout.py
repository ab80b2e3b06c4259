"""Keeping a task file's layout when ruamel rewrites part of it.

ruamel's round trip keeps comments and key order but not every byte: it has one indentation
style per dump and hangs the lines that follow a value (blank lines, the next key's comments) on
the deepest last item before them. The tools here make edits look hand-made: pick the
indentation that reproduces the file best (:func:`fitting_yaml`), move those trailing lines
along when items are appended, replaced or removed (:func:`detach_trailing`,
:func:`attach_trailing`), and carry only the changed lines over to the file as written when
ruamel cannot reproduce it exactly (:func:`transplant`). Used by write-back and single-entry
extraction.
"""

from __future__ import annotations

import copy
import difflib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from skalds.taskfile.common import dump_yaml, load_yaml, new_yaml, source_error

CANNOT_KEEP_LAYOUT = (
    "cannot write attachments back faithfully (the values or the layout of other parts would change); "
    "the file is left as it was"
)


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


def fitting_yaml(path: Path, original: str) -> tuple[YAML, str]:
    """The indentation settings whose output best matches the file as written, and that output."""
    newline = "\r\n" if "\r\n" in original else "\n"
    best: tuple[float, YAML, str] | None = None
    for style in _indent_styles():
        yaml = new_yaml(*style)
        dumped = dump_yaml(yaml, load_yaml(yaml, path, original), newline)
        if dumped == original:
            return yaml, dumped
        score = difflib.SequenceMatcher(
            None, dumped.splitlines(keepends=True), original.splitlines(keepends=True), autojunk=False
        ).ratio()
        if best is None or score > best[0]:
            best = (score, yaml, dumped)
    assert best is not None
    return best[1], best[2]


def transplant(path: Path, original: str, baseline: str, changed: str) -> str:
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
                raise source_error(path, CANNOT_KEEP_LAYOUT)
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
            raise source_error(path, CANNOT_KEEP_LAYOUT)
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


@dataclass(frozen=True)
class Trailing:
    """Lines that follow a node's last value, and a comment token to carry them."""

    text: str
    template: Any


def _last_holders(node: Any) -> list[tuple[Any, Any, int]]:
    """(container, key, comment slot) from ``node``'s last item down to its deepest last item."""
    if not isinstance(node, CommentedMap | CommentedSeq) or not len(node):
        return []
    last: Any = next(reversed(node)) if isinstance(node, CommentedMap) else len(node) - 1
    return holders_at(node, last)


def holders_at(container: Any, key: Any) -> list[tuple[Any, Any, int]]:
    """(container, key, comment slot) from ``container[key]`` down to its deepest last item."""
    slot = 2 if isinstance(container, CommentedMap) else 0
    return [(container, key, slot), *_last_holders(container[key])]


def detach_trailing(node: Any) -> Trailing | None:
    """Cut the lines that ruamel keeps after a node's last value (blank lines, comments).

    ruamel stores them in the comment of the deepest last item, so anything appended after that
    item would otherwise land below them. The item keeps its own end-of-line comment.
    """
    return detach_from_holders(_last_holders(node))


def attach_trailing(node: Any, trailing: Trailing | None) -> None:
    """Put lines cut by :func:`detach_trailing` back after ``node``'s (new) last value."""
    attach_to_holders(_last_holders(node), trailing)


def detach_from_holders(holders: list[tuple[Any, Any, int]]) -> Trailing | None:
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
            return Trailing(text, template)
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


def attach_to_holders(holders: list[tuple[Any, Any, int]], trailing: Trailing | None) -> None:
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
