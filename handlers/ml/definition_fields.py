"""Reading one field of a model definition: each reader checks a value, and names the file and the field when
it is wrong.

The section parsers (:mod:`handlers.ml.definition`, :mod:`handlers.ml.definition_data`,
:mod:`handlers.ml.definition_serving`) are written with these and with the rules every definition file shares
(:mod:`handlers.schema.rules`: required and unknown keys, durations), so every refusal has one shape —
:class:`~handlers.schema.errors.DefinitionError` with the file, the dotted path of the field
(``data.columns.title.path``) and the reason — and a section reads as the list of rules it enforces.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from handlers.ml.definition_types import EntryPoint, import_target
from handlers.schema.errors import DefinitionError
from handlers.schema.rules import is_number, require

COLUMN_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ENTRY_POINT_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def mapping(doc: Mapping[str, Any], key: str, filename: str, where: str, *, required: bool = True) -> dict[str, Any]:
    """``doc[key]`` as a mapping; ``{}`` when it is absent and not ``required``."""
    value = doc.get(key)
    if value is None and not required:
        return {}
    require(isinstance(value, dict), filename, where, "required: a mapping" if value is None else "must be a mapping")
    return value


def text(doc: Mapping[str, Any], key: str, filename: str, where: str) -> str:
    """``doc[key]``: a non-empty string, stripped."""
    value = doc.get(key)
    require(isinstance(value, str) and value.strip() != "", filename, where, "required: a non-empty string")
    return value.strip()


def number(value: Any, filename: str, where: str, *, low: float | None = None, high: float | None = None) -> float:
    """A finite number (not a boolean) within [``low``, ``high``] when given."""
    require(is_number(value), filename, where, f"{value!r} is not a finite number")
    if low is not None:
        require(value >= low, filename, where, f"{value} is below {low}")
    if high is not None:
        require(value <= high, filename, where, f"{value} is above {high}")
    return float(value)


def integer(value: Any, filename: str, where: str, *, low: int, high: int | None = None) -> int:
    """A whole number (not a boolean) within [``low``, ``high``]."""
    require(isinstance(value, int) and not isinstance(value, bool), filename, where, f"{value!r} is not an integer")
    require(value >= low and (high is None or value <= high), filename, where,
            f"{value} is outside [{low}, {high if high is not None else '∞'}]")
    return int(value)


def entry_point(value: Any, filename: str, where: str, *, resolve: bool) -> EntryPoint:
    """``module.path:function``, imported now when ``resolve`` (a missing function fails the load, not a run)."""
    require(isinstance(value, str) and ENTRY_POINT_PATTERN.match(value) is not None, filename, where,
            f"{value!r} is not an entry point; write module.path:function")
    if not resolve:
        return EntryPoint(value)
    try:
        function = import_target(value)
    except (ImportError, AttributeError) as exc:
        raise DefinitionError(filename, where, f"cannot import {value}: {exc}") from None
    require(callable(function), filename, where, f"{value} is not callable")
    return EntryPoint(value, function)


def per_column(value: Any, columns: dict[str, str], filename: str, where: str, *, default: float | None,
               high: float | None) -> dict[str, float]:
    """``{default: x, <column>: y, ...}`` (or a single number for all) -> a value per listed column."""
    if is_number(value):
        value = {"default": value}
    require(isinstance(value, dict), filename, where, "a number, or a mapping of column (or 'default') to number")
    for key in value:
        require(key == "default" or key in columns, filename, f"{where}.{key}",
                f"no column {key!r} (columns: {', '.join(columns)})")
    base = value.get("default", default)
    out = {}
    for column in columns:
        if column in value or base is not None:
            raw = value.get(column, base)
            out[column] = number(raw, filename, f"{where}.{column}" if column in value else f"{where}.default",
                                 low=0.0, high=high)
    return out
