"""Event types declared in YAML (``event_types/*.yaml``), validated once and compiled to field checks.

A mobile developer adds an event type by adding one file — no code. The file is checked when the
consumer starts: a broken file stops start-up with a :class:`DefinitionError` naming the file, the field
and the reason. Each type carries a ``version``; ``event_types/schema.lock.json`` remembers the last
accepted shape of every type so that additive changes (a new optional property, a looser limit, a new
enum value) pass and breaking ones (a removed property, a changed type, a tighter limit) are refused.
Files whose name starts with ``_`` hold shared definitions (``_context.yaml``: the envelope's context).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers.schema import codegen, fields
from handlers.schema.errors import DefinitionError
from handlers.schema.rules import is_number, known_keys, read_yaml, require

LOCK_FILE = "schema.lock.json"
NAME_PATTERN = re.compile(r"^[A-Z][A-Za-z0-9]{1,63}$")
PROPERTY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$|^[a-z][A-Za-z0-9]{0,63}$")
TOP_LEVEL_KEYS = ("name", "version", "description", "owner", "properties")
COMMON_KEYS = {"type", "description", "required", "pii"}
KEYS_BY_TYPE = {
    "string": {"min_length", "max_length", "pattern"},
    "integer": {"min", "max"},
    "number": {"min", "max"},
    "boolean": set(),
    "timestamp": set(),
    "enum": {"values"},
    "geo_point": set(),
    "object": {"properties", "additional_properties"},
    "list": {"items", "min_items", "max_items"},
}


@dataclass(frozen=True)
class EventType:
    """One compiled event type: its definition as written and the check built from it."""

    name: str
    version: int
    description: str
    filename: str
    properties: dict[str, dict[str, Any]]  # the normalised field specs, as written in the YAML
    check: fields.Check = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.properties, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Catalog:
    """All event types of a deployment plus the shared context definition."""

    types: dict[str, EventType]
    context_check: fields.Check
    max_depth: int
    context_properties: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, name: str) -> EventType | None:
        return self.types.get(name)


def normalise_spec(spec: Any, filename: str, path: str, shared: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check one field spec and return it with defaults made explicit (the form stored in the lock)."""
    require(isinstance(spec, dict), filename, path, "a field must be a mapping with at least 'type'")
    if "shared" in spec:
        shared = shared or {}
        name = spec["shared"]
        require(name in shared, filename, f"{path}.shared",
                f"no shared field {name!r} in _shared.yaml (known: {', '.join(sorted(shared))})")
        overrides = set(spec) - {"shared", "required", "description", "pii"}
        require(not overrides, filename, path, f"a shared field only takes required/description/pii, "
                                               f"not {sorted(overrides)}")
        spec = {**shared[name], **{k: v for k, v in spec.items() if k != "shared"}}
    kind = spec.get("type")
    require(kind in KEYS_BY_TYPE, filename, f"{path}.type",
            f"unknown type {kind!r}; use one of {', '.join(KEYS_BY_TYPE)}")
    unknown = set(spec) - COMMON_KEYS - KEYS_BY_TYPE[kind]
    require(not unknown, filename, path, f"unknown key(s) {sorted(unknown)} for type {kind}")
    out: dict[str, Any] = {"type": kind, "required": bool(spec.get("required", False)),
                           "pii": bool(spec.get("pii", False))}
    for flag in ("required", "pii"):
        require(isinstance(spec.get(flag, False), bool), filename, f"{path}.{flag}", "must be true or false")
    if kind == "string":
        for key in ("min_length", "max_length"):
            if key in spec:
                require(isinstance(spec[key], int) and spec[key] >= 0, filename, f"{path}.{key}",
                        "must be a non-negative integer")
        out["min_length"] = spec.get("min_length", 0)
        out["max_length"] = spec.get("max_length", fields.DEFAULT_MAX_STRING)
        require(out["min_length"] <= out["max_length"], filename, path, "min_length is above max_length")
        if "pattern" in spec:
            try:
                re.compile(spec["pattern"])
            except (re.error, TypeError) as exc:
                raise DefinitionError(filename, f"{path}.pattern", f"not a valid regular expression: {exc}") from None
            out["pattern"] = spec["pattern"]
    elif kind in ("integer", "number"):
        for key in ("min", "max"):
            if key in spec:
                require(is_number(spec[key]), filename, f"{path}.{key}", "must be a finite number")
                out[key] = spec[key]
        if "min" in out and "max" in out:
            require(out["min"] <= out["max"], filename, path, "min is above max")
    elif kind == "enum":
        values = spec.get("values")
        require(isinstance(values, list) and values and all(isinstance(v, str) for v in values),
                filename, f"{path}.values", "an enum needs a non-empty list of strings")
        require(len(set(values)) == len(values), filename, f"{path}.values", "duplicate values")
        out["values"] = list(values)
    elif kind == "object":
        out["properties"] = normalise_properties(spec.get("properties", {}), filename, f"{path}.properties",
                                                 shared)
        out["additional_properties"] = bool(spec.get("additional_properties", False))
    elif kind == "list":
        require("items" in spec, filename, f"{path}.items", "a list needs an 'items' field spec")
        out["items"] = normalise_spec(spec["items"], filename, f"{path}.items", shared)
        out["min_items"] = spec.get("min_items", 0)
        out["max_items"] = spec.get("max_items", 100)
        for key in ("min_items", "max_items"):
            require(isinstance(out[key], int) and out[key] >= 0, filename, f"{path}.{key}",
                    "must be a non-negative integer")
    return out


def normalise_properties(properties: Any, filename: str, path: str,
                         shared: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    require(isinstance(properties, dict), filename, path, "must be a mapping of property name to field spec")
    out = {}
    for name, spec in properties.items():
        require(isinstance(name, str) and PROPERTY_PATTERN.match(name) is not None, filename,
                f"{path}.{name}", "property names are snake_case or camelCase ASCII, at most 64 characters")
        out[name] = normalise_spec(spec, filename, f"{path}.{name}", shared)
    return out


def compile_spec(spec: dict[str, Any], path: str, max_depth: int) -> fields.Check:
    check = _compile_spec(spec, path, max_depth)
    return fields.withhold_values(check) if spec["pii"] else check


def _compile_spec(spec: dict[str, Any], path: str, max_depth: int) -> fields.Check:
    kind = spec["type"]
    if kind == "string":
        return fields.string_check(path, min_length=spec["min_length"], max_length=spec["max_length"],
                                   pattern=spec.get("pattern"))
    if kind == "number":
        return fields.number_check(path, minimum=spec.get("min"), maximum=spec.get("max"))
    if kind == "integer":
        return fields.integer_check(path, minimum=spec.get("min"), maximum=spec.get("max"))
    if kind == "boolean":
        return fields.boolean_check(path)
    if kind == "timestamp":
        return fields.timestamp_check(path)
    if kind == "enum":
        return fields.enum_check(path, spec["values"])
    if kind == "geo_point":
        return fields.geo_point_check(path)
    if kind == "object":
        return compile_object(spec["properties"], path, max_depth, spec["additional_properties"])
    if kind == "list":
        return fields.list_check(path, compile_spec(spec["items"], path, max_depth),
                                 min_items=spec["min_items"], max_items=spec["max_items"])
    raise AssertionError(kind)  # unreachable: normalise_spec refused it


def compile_object(properties: dict[str, dict[str, Any]], path: str, max_depth: int,
                   additional: bool) -> fields.Check:
    """One generated function per object (fast path inline, closures for the rest): see codegen.py."""
    return codegen.compile_object(properties, path, max_depth, additional,
                                  lambda spec, where: compile_spec(spec, where, max_depth))


def load_event_type(path: Path, max_depth: int, shared: dict[str, Any] | None = None) -> EventType:
    doc = read_yaml(path)
    name = path.name
    require(isinstance(doc, dict), name, None, "must be a mapping with name, version and properties")
    known_keys(doc, TOP_LEVEL_KEYS, name, None)
    require(isinstance(doc.get("name"), str) and NAME_PATTERN.match(doc["name"]) is not None, name, "name",
            "required; PascalCase ASCII such as ItemListed")
    require(path.stem == doc["name"], name, "name", f"must match the file name ({path.stem})")
    require(isinstance(doc.get("version"), int) and doc["version"] >= 1, name, "version",
            "required; a positive integer, bumped on every change")
    require(isinstance(doc.get("description"), str) and doc["description"].strip() != "", name,
            "description", "required: say when the app sends this event")
    properties = normalise_properties(doc.get("properties", {}), name, "properties", shared)
    return EventType(
        name=doc["name"], version=doc["version"], description=doc["description"].strip(), filename=name,
        properties=properties,
        check=compile_object(properties, "properties", max_depth, additional=False),
    )


def load_shared_fields(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    doc = read_yaml(path)
    require(isinstance(doc, dict) and isinstance(doc.get("fields"), dict), path.name, "fields",
            "must hold a 'fields' mapping of name to field spec")
    for name, spec in doc["fields"].items():  # validate each once, so errors name _shared.yaml
        normalise_spec(spec, path.name, f"fields.{name}")
    return doc["fields"]


def load_catalog(directory: Path, *, max_depth: int = 8, check_lock: bool = True) -> Catalog:
    """Load every event type under ``directory``; raise DefinitionError on the first broken file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DefinitionError(str(directory), None, "event type directory not found")
    shared = load_shared_fields(directory / "_shared.yaml")
    types: dict[str, EventType] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        event_type = load_event_type(path, max_depth, shared)
        types[event_type.name] = event_type
    require(bool(types), str(directory), None, "no event types found (*.yaml)")

    context_file = directory / "_context.yaml"
    require(context_file.exists(), "_context.yaml", None, "the shared context definition is missing")
    doc = read_yaml(context_file)
    require(isinstance(doc, dict) and "context" in doc, "_context.yaml", "context",
            "must hold a 'context' object definition")
    spec = normalise_spec({"type": "object", **doc["context"]}, "_context.yaml", "context")
    context_check = compile_object(spec["properties"], "context", max_depth, spec["additional_properties"])

    if check_lock:
        from handlers.schema.compatibility import check_against_lock  # local: keeps start-up import light

        check_against_lock(types, directory / LOCK_FILE, spec["properties"])
    return Catalog(types=types, context_check=context_check, max_depth=max_depth,
                   context_properties=spec["properties"])
