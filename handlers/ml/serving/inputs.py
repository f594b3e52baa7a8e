"""Reading a prediction request: JSON only, bounded, strictly typed — never a 500 whatever the bytes.

The endpoint's compiled input checks (the event types' field checks, :mod:`handlers.schema.fields`) are made for
tracking events, where an app that sends ``"price": "120.50"`` or a number where a string is declared should
still be counted; they coerce. A prediction request is a contract with one caller, and a silently coerced input
is a wrong answer (``{"title": 12345}`` priced as the title "12345"), so before those checks this module:

* refuses a body that is not declared JSON (``Content-Type: application/json`` or ``…+json``): 415;
* refuses a body over ``max_body_bytes`` before reading it (``Content-Length``, and Flask's
  ``MAX_CONTENT_LENGTH`` for a body without one): 413 — a 10 MB body costs nothing;
* parses with orjson, which refuses what JSON does not allow and stdlib ``json`` lets through — ``NaN`` and
  ``Infinity``, lone UTF-16 surrogates (``"\\ud800"``: a string no encoder can write back), invalid UTF-8, and
  nesting deeper than 1024 (stdlib raises ``RecursionError``, not a ``ValueError``): all 400 ``not_json``;
* checks each declared input's JSON type exactly (:func:`strict_types`): a string input takes a string, an
  integer an integer (not ``true``, not ``3.0``), a number an integer or a float, a boolean a boolean, an enum
  a value of its values' type. 400 ``invalid_type`` naming the field.

GET endpoints take their inputs from the query string, where every value is text; there the endpoint's own
checks convert (that is what a query string means).
"""
from __future__ import annotations

from typing import Any, Mapping

import orjson

from handlers.ml.definition_types import Endpoint
from handlers.ml.serving.errors import BodyTooLarge, InvalidInput, UnsupportedMediaType

JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}


def is_json_type(content_type: str | None) -> bool:
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def check_size(content_length: int | None, max_bytes: int) -> None:
    if content_length is not None and content_length > max_bytes:
        raise BodyTooLarge(f"the body is {content_length} bytes; the limit is {max_bytes}",
                           details={"limit": max_bytes})


def decode(endpoint_path: str, content_type: str | None, raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw`` (already size-checked), or the 415/400 that says why not."""
    if not is_json_type(content_type):
        raise UnsupportedMediaType(f"send the inputs of {endpoint_path} as a JSON object with Content-Type: "
                                   f"application/json (got {content_type or 'no Content-Type'})",
                                   details={"reason": "not_json"})
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", details={"reason": "not_json"}) from None
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object with the inputs of {endpoint_path}, not "
                           f"{type(body).__name__}", details={"reason": "invalid_type"})
    return body


def _type_ok(spec: Mapping[str, Any], value: Any) -> bool:
    kind = spec.get("type")
    if kind == "enum":  # the JSON type of its values (which value: the endpoint's check says not_in_enum)
        return type(value) in {type(allowed) for allowed in spec.get("values", ())}
    allowed = JSON_TYPES.get(kind or "")
    if allowed is None:
        return True
    if isinstance(value, bool):
        return kind == "boolean"
    return isinstance(value, allowed)


def strict_types(endpoint: Endpoint, body: Mapping[str, Any]) -> None:
    """Refuse an input whose JSON type is not the declared one (``null`` is left to the endpoint: absent)."""
    for name, value in body.items():
        spec = endpoint.inputs.get(name)
        if spec is None or value is None or _type_ok(spec, value):
            continue
        expected = "a JSON string (one of its values)" if spec.get("type") == "enum" else f"a JSON {spec.get('type')}"
        raise InvalidInput(f"{name}: expected {expected}, got {_describe(value)}", field=name,
                           details={"reason": "invalid_type"})


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else "an array" if isinstance(value, list) else "an object"
