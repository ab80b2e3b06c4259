"""Plumbing shared by the task-file modules: the ruamel setup, file I/O, error messages, helpers.

Loading (:mod:`._yaml_load`), write-back (:mod:`._yaml_writeback`) and single-entry extraction
(:mod:`._yaml_extract`) must read the file the same way, report problems in the same
``<file>, line N: task 'X', field 'F': ...`` form and treat ruamel's round-trip values (keys
with line numbers, ``ScalarBoolean``, ``ScalarFloat``...) alike; those shared pieces live here.
"""

from __future__ import annotations

import difflib
import io
import math
from collections.abc import Iterable, Mapping, Sequence
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


def _new_yaml(mapping: int = 2, sequence: int = 2, offset: int = 0) -> YAML:
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold long lines that were not folded
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


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


def _find_field(model: type[BaseModel], key: str) -> tuple[str, Any] | None:
    fields = model.model_fields
    if key in fields:
        return key, fields[key]
    for name, info in fields.items():
        if info.alias == key:
            return name, info
    return None
