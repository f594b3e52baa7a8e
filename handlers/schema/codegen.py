"""Compile an object spec to one generated Python function (the hot path of the consumer).

A chain of closures costs a Python call per field; at ~25 fields per event (context included) that
alone would eat most of the time budget of ``make bench``. So, like fastjsonschema, we generate the
source of one function per object spec. Each field gets an *inline fast path* for the common, already
clean value (printable ASCII string within its limits, finite number in range, known enum value…);
anything else — coercion, sanitisation, every error — falls back to the field's closure from
:mod:`handlers.schema.fields`, so both paths share one definition of the semantics. The generated
source only ever contains identifiers and ``repr`` of values we validated ourselves (names matched
``PROPERTY_PATTERN``), never raw YAML text.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

from handlers.schema import fields
from handlers.tracking.errors import Invalid, Reason

Check = Callable[[Any], Any]


class _Builder:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"Invalid": Invalid, "Reason": Reason, "_isfinite": math.isfinite}
        self.lines: list[str] = []
        self.counter = 0

    def name(self, prefix: str, value: Any) -> str:
        self.counter += 1
        key = f"_{prefix}{self.counter}"
        self.namespace[key] = value
        return key


def _fast_condition(b: _Builder, spec: dict[str, Any], v: str) -> str | None:
    """A Python expression true when ``v`` is already valid and canonical; None: always use the slow path."""
    kind = spec["type"]
    if kind == "string":
        cond = (f"type({v}) is str and {v}.isascii() and {v}.isprintable() and "
                f"{spec['min_length']} <= len({v}) <= {spec['max_length']} and {v}.strip() is {v}")
        if "pattern" in spec:
            cond += f" and {b.name('match', re.compile(spec['pattern']).fullmatch)}({v}) is not None"
        return cond
    if kind in ("number", "integer"):
        bounds = []
        if "min" in spec:
            bounds.append(f"{v} >= {spec['min']!r}")
        if "max" in spec:
            bounds.append(f"{v} <= {spec['max']!r}")
        if kind == "integer":  # and within int64, as fields.integer_check requires (orjson yields up to 2**64 - 1)
            if spec.get("min", fields.INT64_MIN - 1) < fields.INT64_MIN:
                bounds.append(f"{v} >= {fields.INT64_MIN!r}")
            if spec.get("max", fields.INT64_MAX + 1) > fields.INT64_MAX:
                bounds.append(f"{v} <= {fields.INT64_MAX!r}")
            return " and ".join([f"type({v}) is int", *bounds])
        finite = [] if len(bounds) == 2 else [f"_isfinite({v})"]
        return " and ".join([f"type({v}) is float", *bounds, *finite])  # ints take the slow path: -> float
    if kind == "boolean":
        return f"type({v}) is bool"
    if kind == "enum":
        return f"type({v}) is str and {v} in {b.name('enum', frozenset(spec['values']))}"
    return None


def compile_object(properties: dict[str, dict[str, Any]], path: str, max_depth: int, additional: bool,
                   slow_check: Callable[[dict[str, Any], str], Check]) -> Check:
    """Generate ``check(value) -> dict`` for an object spec. ``slow_check(spec, path)`` builds closures."""
    b = _Builder()
    fallback = fields.object_check(path, {n: (slow_check(s, f"{path}.{n}" if path else n), s["required"])
                                          for n, s in properties.items()},
                                   additional=fields.free_value_check(path or "properties", max_depth)
                                   if additional else None)
    known = b.name("known", frozenset(properties))
    lines = [
        "def check(value):",
        "    if type(value) is not dict:",
        f"        return {b.name('fallback', fallback)}(value)",
        f"    if not {known}.issuperset(value):",
        f"        return {b.name('fallback', fallback)}(value)",
        "    out = {}",
    ]
    for field_name, spec in properties.items():
        where = f"{path}.{field_name}" if path else field_name
        if spec["type"] == "object":
            closure = compile_object(spec["properties"], where, max_depth, spec["additional_properties"], slow_check)
            if spec["pii"]:
                closure = fields.withhold_values(closure)  # nothing inside a personal-data object reaches a message
        else:
            closure = slow_check(spec, where)
        slow = b.name("slow", closure)
        lines.append(f"    v = value.get({field_name!r})")
        lines.append("    if v is not None:")
        cond = _fast_condition(b, spec, "v")
        if cond is None:
            lines.append(f"        out[{field_name!r}] = {slow}(v)")
        else:
            lines.append(f"        out[{field_name!r}] = v if {cond} else {slow}(v)")
        if spec["required"]:
            lines.append("    else:")
            lines.append(f"        raise Invalid(Reason.MISSING_FIELD, {where!r}, 'required but missing')")
    lines.append("    return out")
    source = "\n".join(lines)
    exec(compile(source, f"<event-type check {path or 'properties'}>", "exec"), b.namespace)  # noqa: S102
    return b.namespace["check"]
