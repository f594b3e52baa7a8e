"""A C-speed fast path for clean events: msgspec decodes *and* validates straight from the bytes.

The generic path (orjson → generated Python checks, see :mod:`codegen`) costs a Python call or two per
field. Most traffic is native events from our own apps that are already clean, so for each event type
we also derive msgspec Struct types from the same YAML — a tagged union on ``type`` — and let msgspec
decode and check types, ranges, lengths, patterns and enums in C.

The fast path only *accepts*. It is tried when the raw bytes make sanitising a no-op — no backslash (no
escaped control characters), no quote next to a space (no string to trim, given compact JSON), and text
that is ASCII or Latin letters (precomposed, so already NFC) — and anything it does not accept (a validation
error, an undeclared key at the top level or in the context, a Segment payload, a value needing coercion such
as ``"120.50"``) falls back to the generic path, which makes the decision and writes the precise error. So
both paths accept exactly the same events and produce the same canonical output (numbers as floats, fields in
declaration order, absent optionals omitted); ``tests/unit/test_fastpath.py`` holds them to that.
"""
from __future__ import annotations

import keyword
import re
from typing import Annotated, Any, Literal, Union

import msgspec

from handlers.schema.event_types import Catalog, EventType
from handlers.schema.fields import INT64_MAX, INT64_MIN


_PLAIN_ASCII = bytes(b for b in range(0x20, 0x7F) if b != ord("\\"))
_LATIN_BYTES = bytes([0xC2, 0xC3, 0xC4, 0xC5, *range(0x80, 0xC0)])
_C1_OR_NBSP = re.compile(rb"\xc2[\x80-\xa0]")


class Unsupported(Exception):
    """The spec uses something the fast path does not model (the type then always takes the generic path)."""


def _field_type(spec: dict[str, Any], name: str) -> Any:
    kind = spec["type"]
    if kind == "string":
        meta: dict[str, Any] = {"min_length": spec["min_length"], "max_length": spec["max_length"]}
        if "pattern" in spec:
            meta["pattern"] = f"^(?:{spec['pattern']})\\Z"  # msgspec searches; the YAML means a full match
        return Annotated[str, msgspec.Meta(**meta)]
    if kind in ("number", "integer"):
        bounds = {k: spec[src] for k, src in (("ge", "min"), ("le", "max")) if src in spec}
        if kind == "integer":  # msgspec decodes ints of any size; the generic path keeps them to int64
            bounds["ge"] = max(bounds.get("ge", INT64_MIN), INT64_MIN)
            bounds["le"] = min(bounds.get("le", INT64_MAX), INT64_MAX)
        base = float if kind == "number" else int
        return Annotated[base, msgspec.Meta(**bounds)] if bounds else base
    if kind == "boolean":
        return bool
    if kind == "enum":
        return Literal[tuple(spec["values"])]
    if kind == "geo_point":
        return _struct(f"{name}_geo", {"lat": {"type": "number", "min": -90, "max": 90, "required": True},
                                       "lon": {"type": "number", "min": -180, "max": 180, "required": True}})
    if kind == "object":
        return _struct(name, spec["properties"])
    if kind == "list":
        return Annotated[list[_field_type(spec["items"], name)],  # type: ignore[misc]
                         msgspec.Meta(min_length=spec["min_items"], max_length=spec["max_items"])]
    raise Unsupported(kind)  # timestamps: canonicalisation needs the generic path


def _struct(name: str, properties: dict[str, dict[str, Any]], **config: Any) -> type[msgspec.Struct]:
    fields = []
    for prop, spec in properties.items():
        attribute = f"{prop}_" if keyword.iskeyword(prop) else prop
        kind = _field_type(spec, f"{name}_{prop}")
        if spec["required"]:
            fields.append((attribute, kind, msgspec.field(name=prop)))
        else:
            fields.append((attribute, Union[kind, None], msgspec.field(name=prop, default=None)))
    options = {"forbid_unknown_fields": True, "omit_defaults": True, "kw_only": True, **config}
    return msgspec.defstruct(f"Fast_{name}", fields, **options)


def envelope_struct(event_type: EventType, context: type[msgspec.Struct], max_message_id: int,
                    max_user_id: int) -> type[msgspec.Struct]:
    properties = _struct(event_type.name, event_type.properties)
    has_required = any(s["required"] for s in event_type.properties.values())
    identity = Union[Annotated[str, msgspec.Meta(min_length=1, max_length=max_user_id)], None]
    fields = [
        ("messageId", Annotated[str, msgspec.Meta(min_length=1, max_length=max_message_id)]),
        ("timestamp", str),
        ("properties", properties) if has_required else ("properties", Union[properties, None], None),
        ("userId", identity, None),
        ("anonymousId", identity, None),
        ("sentAt", Union[str, None], None),
        ("context", Union[context, None], None),
    ]
    # Unknown top-level keys (Segment's "integrations", say) send the record to the generic path, which ignores
    # them: msgspec would skip them unread — invalid UTF-8 in them included, which orjson (the generic path)
    # refuses — and skipping deep nesting recurses. With every key known, msgspec decodes, so checks, every byte.
    return msgspec.defstruct(f"Fast_{event_type.name}_envelope", fields, tag_field="type", tag=event_type.name,
                             kw_only=True, forbid_unknown_fields=True)


class FastDecoder:
    """Decodes a record's bytes into an envelope Struct, or returns None (then: the generic path)."""

    def __init__(self, catalog: Catalog, context_properties: dict[str, dict[str, Any]], *,
                 max_message_id: int, max_user_id: int) -> None:
        context = _struct("context", context_properties)
        envelopes = []
        self.versions: dict[type, tuple[str, int]] = {}
        for event_type in catalog.types.values():
            try:
                envelope = envelope_struct(event_type, context, max_message_id, max_user_id)
            except Unsupported:
                continue
            envelopes.append(envelope)
            self.versions[envelope] = (event_type.name, event_type.version)
        self._decoder = msgspec.json.Decoder(Union[tuple(envelopes)]) if envelopes else None

    @staticmethod
    def eligible(data: bytes) -> bool:
        """True when sanitising could not change any string of this (compact) JSON text.

        Byte-level and C-speed: deleting every printable ASCII byte but the backslash leaves what needs a
        look. Nothing left: plain ASCII. Otherwise only Latin-1 Supplement / Latin Extended-A letters pass
        (UTF-8 lead bytes C3-C5, or C2 above NBSP, plus continuation bytes): precomposed, hence already NFC,
        neither control characters nor spaces. Anything else (escapes, other scripts) takes the generic path.
        """
        if b'" ' in data or b' "' in data:
            return False  # a string that may need trimming (compact JSON has no other quote-space pair)
        rest = data.translate(None, _PLAIN_ASCII)
        if not rest:
            return True
        return not rest.translate(None, _LATIN_BYTES) and _C1_OR_NBSP.search(rest) is None

    def decode(self, data: bytes) -> Any:
        if self._decoder is None:
            return None
        try:
            return self._decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return None  # RecursionError: should msgspec ever recurse too deep, the generic path decides


to_builtins = msgspec.to_builtins
