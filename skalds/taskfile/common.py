"""Plumbing shared by the task-file modules: the ruamel setup, file I/O, error messages, helpers.

Loading (:mod:`.load`), write-back (:mod:`.writeback`) and single-entry extraction
(:mod:`.extract`) must read the file the same way, report problems in the same
``<file>, line N: task 'X', field 'F': ...`` form and treat ruamel's round-trip values (keys
with line numbers, ``ScalarBoolean``, ``ScalarFloat``...) alike; those shared pieces live here.
"""

from __future__ import annotations

import difflib
import io
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarfloat import ScalarFloat

from skalds.errors import TaskSourceError

#: The top-level key that holds the task entries.
ROOT_KEY = "TaskWorkers"


# --------------------------------------------------------------------------------------------
# YAML reading and writing


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


def new_yaml(mapping: int = 2, sequence: int = 2, offset: int = 0) -> YAML:
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold long lines that were not folded
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def read_exact(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise source_error(path, f"cannot read the file: {exc}") from exc


def load_yaml(yaml: YAML, path: Path, text: str) -> Any:
    """The file's document; a :class:`TaskSourceError` when it is not valid YAML or its aliases
    would expand too far (:func:`_check_aliases`)."""
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        raise _parse_problem(path, exc) from exc
    except Exception as exc:
        raise source_error(path, f"not valid YAML: {exc}") from exc
    _check_aliases(path, doc)
    return doc


# --------------------------------------------------------------------------------------------
# Alias expansion

#: Aliases (``*name``) may repeat at most this many values in all, a string counting once per
#: :data:`ALIAS_TEXT_UNIT` characters begun. Loading keeps an alias as a reference to the one
#: value it names, but validation, the task records and every message to a worker expand it: a
#: few hundred bytes of nested aliases (the "billion laughs") would take gigabytes and minutes.
MAX_ALIAS_EXPANSION = 100_000
ALIAS_TEXT_UNIT = 100


def _weight(value: Any) -> int:
    return 1 + len(value) // ALIAS_TEXT_UNIT if isinstance(value, str) else 1


def _check_aliases(path: Path, doc: Any) -> None:
    """Refuse a document whose aliases repeat more than :data:`MAX_ALIAS_EXPANSION` values.

    One pass over the loaded document, each value visited once however often it is repeated
    (sizes are remembered per object), no recursion: milliseconds and no memory to speak of,
    whatever the aliases would expand to. Only containers and long strings can be repeated for a
    price, so only they are told apart by identity.
    """
    if not isinstance(doc, Mapping) and not is_sequence(doc):
        return
    sizes: dict[int, int] = {}  # id -> expanded weight, for every container and long string done
    on_path: set[int] = set()
    written = 0  # the weight of every value once, as the file spells it
    worst: tuple[int, int | None] = (0, None)  # the largest alias use: (weight, line)
    # Frames: [container, its children (key, value), expanded weight so far, its key in its parent].
    stack: list[list[Any]] = [[doc, _children(doc), 1, None]]
    on_path.add(id(doc))
    written += 1
    while stack:
        frame = stack[-1]
        descend = None
        for key, child, key_weight in frame[1]:
            frame[2] += key_weight
            written += key_weight
            shared = (
                isinstance(child, Mapping)
                or is_sequence(child)
                or (isinstance(child, str) and len(child) >= ALIAS_TEXT_UNIT)
            )
            if not shared:
                frame[2] += _weight(child)
                written += _weight(child)
                continue
            known = sizes.get(id(child))
            if known is not None:  # an alias: the whole value again
                frame[2] += known
                if known > worst[0]:
                    worst = (known, _line_in(stack, key))
                continue
            if id(child) in on_path:  # an alias inside what it names
                what = "an alias (*name) refers to a value that contains it"
                raise source_error(path, what, line=_line_in(stack, key))
            if isinstance(child, str):
                sizes[id(child)] = _weight(child)
                frame[2] += sizes[id(child)]
                written += sizes[id(child)]
                continue
            descend = child
            break
        if descend is not None:
            on_path.add(id(descend))
            written += 1
            stack.append([descend, _children(descend), 1, key])
            continue
        stack.pop()
        on_path.discard(id(frame[0]))
        sizes[id(frame[0])] = frame[2]
        if stack:
            stack[-1][2] += frame[2]
    repeated = sizes[id(doc)] - written
    if repeated > MAX_ALIAS_EXPANSION:
        size, line = worst
        where = "on this line" if line else "in the file"
        raise source_error(
            path,
            f"not loaded: its aliases (*name) repeat {repeated:,} values, more than the "
            f"{MAX_ALIAS_EXPANSION:,} allowed (a string counts once per {ALIAS_TEXT_UNIT} characters); "
            f"the largest use, of {size:,} values, is {where}. Write such values out, or repeat less",
            line=line,
        )


def _children(node: Any) -> Iterator[tuple[Any, Any, int]]:
    """``(key, value, weight of the key)`` of a mapping's items (merged ones too) or a list's items."""
    if isinstance(node, Mapping):
        return ((key, value, _weight(key)) for key, value in node.items())
    return ((index, value, 0) for index, value in enumerate(node))


def _line_in(stack: list[list[Any]], key: Any) -> int | None:
    """The line of ``key`` in the container on top of ``stack`` — or, inside lists, of the nearest
    mapping key around it (ruamel gives an alias in a list the line of its anchor)."""
    for depth in range(len(stack) - 1, -1, -1):
        if isinstance(stack[depth][0], Mapping):
            return key_line(stack[depth][0], key)
        key = stack[depth][3]
    return None


def dump_yaml(yaml: YAML, doc: Any, newline: str) -> str:
    stream = io.StringIO()
    yaml.dump(doc, stream)
    text = stream.getvalue()
    return text.replace("\n", newline) if newline != "\n" else text


# --------------------------------------------------------------------------------------------
# Small helpers


def source_error(
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
        return source_error(path, f"not valid YAML: {problem}")
    return source_error(path, f"not valid YAML (column {mark.column + 1}): {problem}", line=mark.line + 1)


def key_line(node: Any, key: Any) -> int | None:
    """1-based line of a mapping key, when ruamel recorded it."""
    try:
        return int(node.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def item_line(node: Any, index: int) -> int | None:
    try:
        return int(node.lc.item(index)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def is_bool(value: Any) -> bool:
    return isinstance(value, bool | ScalarBoolean)


def is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def to_plain(value: Any) -> Any:
    """ruamel's round-trip types turned into plain Python values."""
    if isinstance(value, Mapping):
        return {(to_plain(k) if isinstance(k, str | int | float) else k): to_plain(v) for k, v in value.items()}
    if is_sequence(value):
        return [to_plain(v) for v in value]
    if is_bool(value):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, Mapping):
        return "a mapping"
    if is_sequence(value):
        return "a list"
    return f"{type(value).__name__} {show_value(value)}"


def show_value(value: Any, limit: int = 60) -> str:
    text = repr(to_plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in options}
        if word.lower() in lowered:
            matches = [lowered[word.lower()]]
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def find_field(model: type[BaseModel], key: str) -> tuple[str, Any] | None:
    fields = model.model_fields
    if key in fields:
        return key, fields[key]
    for name, info in fields.items():
        if info.alias == key:
            return name, info
    return None
