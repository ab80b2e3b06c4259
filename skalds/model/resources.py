"""Labels, resources and requirements: their syntax and checks, shared by settings, worker classes
and tasks (placement itself is :mod:`skalds.controller.placement`).

A label or resource name is 1–63 of ``A-Z a-z 0-9 . _ / -``; a label value is 0–63 of
``A-Z a-z 0-9 . _ -``; an amount is a finite number ≥ 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator

NAME = re.compile(r"[A-Za-z0-9._/-]{1,63}")
VALUE = re.compile(r"[A-Za-z0-9._-]{0,63}")


def _pairs(text: str, setting: str, example: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{setting}: {part!r} is not name=value (e.g. {example})")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _items(value: Any, where: str, what: str, example: str) -> list[Any]:
    """``value`` (a mapping or ``a=b,c=d``) as (name, value) pairs."""
    if isinstance(value, str):
        return _pairs(value, where, example)
    if isinstance(value, Mapping):
        return list(value.items())
    raise ValueError(f"{where} must be {what}, e.g. {example} (got {value!r})")


def _name(key: Any, where: str, kind: str) -> str:
    if not isinstance(key, str) or not NAME.fullmatch(key):
        raise ValueError(f"{where}: {kind} name {key!r} must be 1-63 of A-Z a-z 0-9 . _ / -")
    return key


def _optional_resources(value: Any) -> Any:
    return None if value is None else check_resources(value, "requires")


def _optional_labels(value: Any) -> Any:
    return None if value is None else check_labels(value, "nodeSelector")


def check_labels(value: Any, where: str) -> dict[str, str]:
    """``value`` (a mapping, or ``zone=eu-1,gpu-model=a100``) as labels; ValueError naming ``where``."""
    items = _items(value, where, "name=value labels", "zone=eu-1,gpu-model=a100")
    labels = {_name(key, where, "label"): label for key, label in items}
    for key, label in labels.items():
        if not isinstance(label, str) or not VALUE.fullmatch(label):
            raise ValueError(f"{where}: value {label!r} of label {key!r} must be 0-63 of A-Z a-z 0-9 . _ -")
    return labels


def check_resources(value: Any, where: str) -> dict[str, float]:
    """``value`` (a mapping, or ``gpu=2,slots=8``) as amounts ≥ 0; ValueError naming ``where``."""
    items = _items(value, where, "name=number resources", "gpu=2,slots=8")
    amounts: dict[str, float] = {}
    for key, raw in items:
        _name(key, where, "resource")
        try:
            amount = float(raw) if isinstance(raw, str) and raw.strip() else raw
        except ValueError:
            amount = raw
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
            raise ValueError(f"{where}: amount of {key!r} must be a number ≥ 0 (got {raw!r})")
        amounts[key] = float(amount)
    return amounts


#: A task's ``requires``: resources one run uses, checked; None: its class's.
Requires = Annotated[dict[str, float] | None, BeforeValidator(_optional_resources)]
#: A task's ``nodeSelector``: labels a node must have, checked; None: its class's.
NodeSelector = Annotated[dict[str, str] | None, BeforeValidator(_optional_labels)]


def format_pairs(values: Mapping[str, Any]) -> str:
    """``{"gpu": 2.0}`` → ``gpu=2`` (for logs and messages)."""
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items()))


__all__ = ["NodeSelector", "Requires", "check_labels", "check_resources", "format_pairs"]
