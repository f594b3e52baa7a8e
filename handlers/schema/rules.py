"""The rules every definition file is read with — event types, metrics, models, the consumer's settings.

One way to refuse (:func:`require`), required and unknown keys, numbers, durations and reading the file itself.
Every refusal is a :class:`~handlers.schema.errors.DefinitionError` naming the file, the field (the dotted path
to it: ``events.where.properties.channel``, ``guard_rails.max_change.window``) and why —
``<file>: <field>: <why>`` — so a broken metric reads like a broken model or event type.

Durations have one syntax, :func:`handlers.core.config.parse_duration`'s (a whole number and a unit, ``s``,
``m``, ``h`` or ``d``: ``90s``, ``15m``, ``24h``, ``30d``), in a YAML file as in a variable; a field then bounds
the value (a metric window is at most an hour).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Collection, Mapping

import yaml

from handlers.core.config import ConfigError, parse_duration
from handlers.schema.errors import DefinitionError


def require(condition: bool, filename: str, field: str | None, message: str) -> None:
    """The one way a rule refuses: :class:`DefinitionError` naming the file, the field and why."""
    if not condition:
        raise DefinitionError(filename, field, message)


def known_keys(doc: Mapping[Any, Any], allowed: Collection[str], filename: str, where: str | None) -> None:
    """Refuse keys outside ``allowed``: a misspelt key must not be silently ignored. ``where`` is the mapping's
    own field (None: the top level)."""
    unknown = set(doc) - set(allowed)
    require(not unknown, filename, where, f"unknown key(s) {sorted(map(str, unknown))}; known: {sorted(allowed)}")


def required_keys(doc: Mapping[Any, Any], keys: Collection[str], filename: str, where: str | None = None) -> None:
    """Refuse a mapping that lacks one of ``keys``; the error names the missing key's field."""
    for key in keys:
        require(key in doc, filename, f"{where}.{key}" if where else key, "required")


def is_number(value: Any) -> bool:
    """A finite int or float, not a boolean."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def duration(value: Any, filename: str, field: str, *, minimum: int = 1) -> int:
    """``90s`` / ``15m`` / ``24h`` / ``30d`` -> seconds, at least ``minimum``."""
    try:
        seconds = int(parse_duration(value, field))
    except ConfigError as error:
        raise DefinitionError(filename, field, error.message) from None
    require(seconds >= minimum, filename, field, f"{value} is shorter than {minimum} s")
    return seconds


def read_yaml(path: Path) -> Any:
    """The YAML document of ``path``; a file that cannot be read or is not UTF-8 YAML is refused by name."""
    return parse_yaml(read_bytes(path), path.name)


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DefinitionError(path.name, None, f"cannot read the file: {exc.strerror or exc}") from None


def parse_yaml(raw: bytes, filename: str) -> Any:
    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DefinitionError(filename, None, f"not valid YAML: {exc}") from None
