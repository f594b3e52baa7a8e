"""JSON Schema (Draft 2020-12) equivalents of the YAML event types, for the generic-pipeline baseline.

Built from the same normalised specs the core compiles (``EventType.properties``, ``_context.yaml``), so
both sides check the same things: types, required, min/max, minLength/maxLength, pattern, enum and
additionalProperties (false for event properties, as declared for context objects).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from handlers.schema.event_types import Catalog, normalise_spec

TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"


def field_schema(spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec["type"]
    if kind == "string":
        out: dict[str, Any] = {"type": "string", "minLength": spec["min_length"], "maxLength": spec["max_length"]}
        if "pattern" in spec:
            out["pattern"] = spec["pattern"]
        return out
    if kind in ("integer", "number"):
        out = {"type": kind}
        if "min" in spec:
            out["minimum"] = spec["min"]
        if "max" in spec:
            out["maximum"] = spec["max"]
        return out
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "timestamp":
        return {"type": "string", "pattern": TIMESTAMP_PATTERN}
    if kind == "enum":
        return {"type": "string", "enum": list(spec["values"])}
    if kind == "geo_point":
        return {"type": "object", "required": ["lat", "lon"], "additionalProperties": False,
                "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                               "lon": {"type": "number", "minimum": -180, "maximum": 180}}}
    if kind == "object":
        return object_schema(spec["properties"], spec["additional_properties"])
    if kind == "list":
        return {"type": "array", "items": field_schema(spec["items"]), "minItems": spec["min_items"],
                "maxItems": spec["max_items"]}
    raise ValueError(kind)


def object_schema(properties: dict[str, dict[str, Any]], additional: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": {n: field_schema(s) for n, s in properties.items()},
                           "additionalProperties": additional}
    required = [n for n, s in properties.items() if s["required"]]
    if required:
        out["required"] = required
    return out


def event_schema(catalog: Catalog, event_types_dir: Path, name: str) -> dict[str, Any]:
    """The whole native envelope of one event type, as a Draft 2020-12 schema."""
    doc = yaml.safe_load((Path(event_types_dir) / "_context.yaml").read_text(encoding="utf-8"))
    context = normalise_spec({"type": "object", **doc["context"]}, "_context.yaml", "context")
    identity = {"type": "string", "minLength": 1, "maxLength": 256}
    timestamp = {"type": "string", "pattern": TIMESTAMP_PATTERN}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["messageId", "type", "timestamp"],
        "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
        "properties": {
            "messageId": {"type": "string", "minLength": 1, "maxLength": 128},
            "type": {"const": name},
            "timestamp": timestamp,
            "sentAt": timestamp,
            "userId": identity,
            "anonymousId": identity,
            "context": field_schema(context),
            "properties": object_schema(catalog.types[name].properties, additional=False),
        },
    }
