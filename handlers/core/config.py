"""Configuration of a deployed function or service: read once, at the edge, with one rule and one error.

Precedence, everywhere: an explicit argument (tests, the local stage) > the environment variable > the
packaged default. Empty variables count as unset (CloudFormation renders optional parameters as ""). A
misconfiguration raises :class:`ConfigError` naming the variable, at cold start — never a KeyError deep in
a batch.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the repo root locally; the zip root on Lambda

_DURATION = re.compile(r"([0-9]+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


class ConfigError(Exception):
    """A deployment (or a configuration file) is misconfigured: ``where`` names the variable or file/field."""

    def __init__(self, where: str, message: str) -> None:
        self.where, self.message = where, message
        super().__init__(f"{where}: {message}")


def parse_duration(text: object, where: str) -> float:
    """``90s``, ``15m``, ``24h``, ``30d`` -> seconds (the one duration syntax of every YAML and variable).

    A whole number and one unit, nothing around them (the definition files read durations through
    :func:`handlers.schema.rules.duration`, which raises their DefinitionError instead)."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ConfigError(where, f"{text!r} is not a duration like 90s, 15m, 24h or 30d")
    return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class Env:
    """One reader of configuration values from a mapping (the process environment unless given)."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values: dict[str, str] = dict(os.environ if values is None else values)

    def optional(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        return value if value not in (None, "") else default

    def required(self, name: str, why: str = "") -> str:
        value = self.optional(name)
        if value is None:
            raise ConfigError(name, "is not set" + (f" ({why})" if why else ""))
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.optional(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(name, f"{value!r} is not a flag (1/0, true/false, yes/no)")

    def number(self, name: str, default: float, *, minimum: float | None = None,
               maximum: float | None = None) -> float:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(name, f"{value!r} is not a number") from None
        if number != number or (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise ConfigError(name, f"{value} is outside {minimum if minimum is not None else '-inf'}.."
                                    f"{maximum if maximum is not None else 'inf'}")
        return number

    def integer(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        number = self.number(name, default, minimum=minimum, maximum=maximum)
        if number != int(number):
            raise ConfigError(name, f"{number} is not a whole number")
        return int(number)

    def duration(self, name: str, default: float) -> float:
        value = self.optional(name)
        return default if value is None else parse_duration(value, name)

    def path(self, name: str, default: Path) -> Path:
        value = self.optional(name)
        return Path(value) if value is not None else default
