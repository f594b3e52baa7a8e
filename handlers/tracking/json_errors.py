"""Why a record is not JSON: orjson's refusal turned into the quarantine's reason and message.

Only the rejection path calls this (:meth:`handlers.tracking.processor.Processor.decode`, when ``orjson.loads``
raises); a valid record never reaches it.
"""
from __future__ import annotations

import re

import orjson

from handlers.tracking.errors import Invalid, Reason

_NON_FINITE = re.compile(r"-?(?:NaN|Infinity)(?![A-Za-z0-9_])")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def explain_bad_json(data: bytes, exc: orjson.JSONDecodeError) -> Invalid:
    """Why orjson refused ``data``, from its message and the text at the error's position.

    Never re-parses with another parser: the standard library's recurses (a RecursionError on deep input)
    and is slow; what orjson saw at ``exc.pos`` (a character offset) is all that is needed.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Invalid(Reason.INVALID_UTF8, None, f"invalid UTF-8 at byte {bad.start}: {bad.reason}")
    message = str(exc)
    if message.startswith("depth limit exceeded") or "recursion" in message.lower():
        return Invalid(Reason.TOO_DEEP, None, "JSON nesting exceeds the parser's limit (1024 levels)")
    pos = exc.pos if type(exc.pos) is int and 0 <= exc.pos <= len(text) else 0
    if message.startswith(("unexpected character, expected a JSON value", "no digit after sign")):
        start = pos - 1 if pos and text[pos - 1] == "-" else pos  # orjson points after the sign of -Infinity
        if _NON_FINITE.match(text, start):
            return Invalid(Reason.NON_FINITE_NUMBER, None, "NaN or Infinity is not a valid JSON number")
    number = _NUMBER.match(text, pos) if message.startswith("number is infinity") else None
    if number is not None:
        # Valid JSON (RFC 8259 lets a parser limit the range), so not not_json; a real number, so not
        # non_finite_number: too large for the 64-bit float it would become (orjson turns integers beyond
        # 64 bits into floats), i.e. out of the range any field can hold — out_of_range.
        literal = number.group()
        if number.group(1) is None and number.group(2) is None:
            digits = len(literal.lstrip("-"))
            return Invalid(Reason.OUT_OF_RANGE, None, f"an integer of {digits} digits is beyond the 64-bit range")
        return Invalid(Reason.OUT_OF_RANGE, None,
                       f"{literal[:40]}{'…' if len(literal) > 40 else ''} is beyond the 64-bit floating-point "
                       "range")
    return Invalid(Reason.NOT_JSON, None, f"not JSON: {message}")
