"""Schema evolution of event types: additive changes pass, breaking changes are refused.

Apps in the field keep sending old shapes for months and the warehouse keeps old rows forever, so an
event type may only *widen*: new optional properties, looser limits, more enum values. Anything that
could turn a previously valid event invalid, or change the meaning of a stored column, is breaking:
ship it as a new event type instead. ``schema.lock.json`` records the last accepted shape of each type;
``letgo types lock`` rewrites it after an accepted change.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from handlers.schema.errors import DefinitionError


def breaking_changes(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]],
                     path: str = "properties") -> Iterator[str]:
    """Yield one human sentence per breaking difference between two normalised property maps."""
    for name, old_spec in old.items():
        where = f"{path}.{name}"
        if name not in new:
            yield f"{where} was removed"
            continue
        yield from _field_changes(old_spec, new[name], where)
    for name, new_spec in new.items():
        if name not in old and new_spec["required"]:
            yield f"{path}.{name} is new and required (old apps do not send it): make it optional"


def _field_changes(old: dict[str, Any], new: dict[str, Any], where: str) -> Iterator[str]:
    if old["type"] != new["type"]:
        yield f"{where} changed type {old['type']} -> {new['type']}"
        return
    if new["required"] and not old["required"]:
        yield f"{where} became required"
    for key, tighter in (("min", lambda o, n: n > o), ("min_length", lambda o, n: n > o),
                         ("min_items", lambda o, n: n > o), ("max", lambda o, n: n < o),
                         ("max_length", lambda o, n: n < o), ("max_items", lambda o, n: n < o)):
        if key in new and (key not in old or tighter(old[key], new[key])):
            yield f"{where}.{key} tightened {old.get(key, 'none')} -> {new[key]}"
    if new.get("pattern") != old.get("pattern") and "pattern" in new:
        yield f"{where}.pattern changed {old.get('pattern')!r} -> {new['pattern']!r}"
    if old["type"] == "enum":
        removed = [v for v in old["values"] if v not in new["values"]]
        if removed:
            yield f"{where}.values lost {removed}"
    if old["type"] == "object":
        if old["additional_properties"] and not new["additional_properties"]:
            yield f"{where}.additional_properties turned off"
        yield from breaking_changes(old["properties"], new["properties"], f"{where}.properties")
    if old["type"] == "list":
        yield from _field_changes(old["items"], new["items"], f"{where}.items")


CONTEXT_KEY = "_context"  # the shared envelope context, locked like a type (it has no version of its own)


def lock_document(types: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
    document = {name: {"version": t.version, "properties": t.properties} for name, t in sorted(types.items())}
    if context is not None:
        document[CONTEXT_KEY] = {"version": 0, "properties": context}
    return document


def check_against_lock(types: dict[str, Any], lock_path: Path, context: dict[str, Any] | None = None) -> None:
    """Refuse breaking changes and un-versioned changes relative to the lock file (if there is one)."""
    if not lock_path.exists():
        return
    try:
        locked = json.loads(lock_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DefinitionError(lock_path.name, None, f"not valid JSON: {exc}") from None
    for name, event_type in types.items():
        previous = locked.get(name)
        if previous is None or previous["properties"] == event_type.properties:
            continue
        problems = list(breaking_changes(previous["properties"], event_type.properties))
        if problems:
            raise DefinitionError(
                event_type.filename, problems[0].split(" ")[0],
                "breaking change refused: " + "; ".join(problems)
                + f". Old apps still send version {previous['version']}: add a new event type instead.")
        if event_type.version <= previous["version"]:
            raise DefinitionError(event_type.filename, "version",
                                  f"the properties changed but version is still {event_type.version}: "
                                  f"bump it to {previous['version'] + 1}")
    previous_context = locked.pop(CONTEXT_KEY, None)
    if context is not None and previous_context is not None:
        problems = list(breaking_changes(previous_context["properties"], context, "context"))
        if problems:
            raise DefinitionError("_context.yaml", problems[0].split(" ")[0],
                                  "breaking change refused: " + "; ".join(problems)
                                  + ". Every app sends this context: only widen it.")
    for name in locked.keys() - types.keys():
        raise DefinitionError(f"{name}.yaml", None,
                              "event type removed: events of this type would be quarantined; "
                              "keep the file (mark it deprecated in its description)")


def write_lock(types: dict[str, Any], lock_path: Path, context: dict[str, Any] | None = None) -> None:
    lock_path.write_text(json.dumps(lock_document(types, context), indent=2, sort_keys=True) + "\n",
                         encoding="utf-8")
