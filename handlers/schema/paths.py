"""Field paths of metrics and models, resolved against the event types.

A metric groups, filters and adds up fields of events; a model learns from them. Both name a field by its
dotted path in the processed event — ``properties.<property>[.<sub>...]`` (declared by the event type) or
``context.<field>[.<sub>...]`` (declared by ``_context.yaml``) — and both must find out at load, not hours
later as empty numbers or an empty column, that a path names no declared field, goes through something that is
not an object, or reaches personal data (``pii``), which neither may read. Each caller checks the shape of
its own paths (what roots and depths it allows) first.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handlers.schema.rules import require

if TYPE_CHECKING:
    from handlers.schema.event_types import Catalog, EventType


def field_spec(path: str, event_type: EventType | None, catalog: Catalog, filename: str, where: str, *,
               no_pii: str) -> dict[str, Any]:
    """The normalised spec of the field ``path`` names (``properties.*`` in ``event_type``, ``context.*`` in the
    catalog's context); refused, naming ``filename`` and ``where``, when it is not declared, when it goes through a
    non-object, or when any field on the way is personal data (``no_pii`` says why that is refused)."""
    parts = path.split(".")
    if parts[0] == "properties":
        assert event_type is not None, "a properties.* path needs its event type"
        specs: dict[str, Any] = event_type.properties
        declared_in = f"event type {event_type.name} ({event_type.filename})"
    else:
        specs, declared_in = catalog.context_properties, "_context.yaml"
    spec: dict[str, Any] = {}
    for depth, part in enumerate(parts[1:], start=1):
        require(part in specs, filename, where, f"{path!r}: no field {part!r} under {'.'.join(parts[:depth])} in "
                                                f"{declared_in} (known: {', '.join(sorted(specs)) or 'none'})")
        spec = specs[part]
        require(not spec["pii"], filename, where, f"{path!r} is personal data (pii): {no_pii}")
        if depth < len(parts) - 1:
            require(spec["type"] == "object", filename, where,
                    f"{path!r}: {'.'.join(parts[:depth + 1])} is a {spec['type']}, not an object")
            specs = spec["properties"]
    return spec
