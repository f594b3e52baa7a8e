"""Field validators compiled from the YAML event-type definitions.

Every declared field becomes one small closure ``check(value) -> value`` that coerces where the type
allows it ("120.50" -> 120.5 for a number, ISO-8601 -> UTC), sanitises strings, enforces constraints and
raises :class:`~handlers.tracking.errors.Invalid` naming the field and the reason. Compiling once at
start-up keeps the per-event hot path to a handful of Python calls (see ``make bench``).
"""
from __future__ import annotations

import math
import re
import unicodedata
from datetime import datetime, timezone
from typing import Any, Callable

from handlers.tracking.errors import Invalid, Reason

Check = Callable[[Any], Any]

DEFAULT_MAX_STRING = 4096
_UTC = timezone.utc
# C0 and C1 control characters except tab and newline (kept: descriptions legitimately contain them).
_CONTROL_CHARS = {c: None for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)]}


def sanitise_string(value: str) -> str:
    """Strip control characters, normalise Unicode to NFC and trim surrounding whitespace."""
    if not value.isprintable():
        value = value.translate(_CONTROL_CHARS)
    if not value.isascii() and not unicodedata.is_normalized("NFC", value):
        value = unicodedata.normalize("NFC", value)
    return value.strip()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__.replace("dict", "object").replace("list", "array")


def preview(value: Any, limit: int = 40) -> str:
    """A short description of a value for an error message: the start of its repr for a scalar, never the repr
    of an object or array (that recurses into every level — a RecursionError on deep input — and costs as much
    as the whole value on wide input)."""
    kind = type(value)
    if kind is dict:
        return "{…}"
    if kind is list:
        return "[…]"
    if kind is str:
        return repr(value[:limit])
    if kind is int and not -10 ** limit < value < 10 ** limit:
        return f"an integer of {_digits(value)} digits"
    return repr(value)[:limit]


# The range of a signed 64-bit integer: what every `integer` field holds downstream (BIGINT in the warehouse,
# msgspec's JSON encoder) — a wider Python int would be refused by a sink, or break it, after validation.
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
_NON_FINITE_WORDS = frozenset({"nan", "inf", "infinity"})


def _digits(value: int) -> int:
    """Decimal digits of an int without str() (which refuses ints over 4,300 digits)."""
    value = abs(value)
    n = max(1, int(value.bit_length() * 0.30102999566398120))  # log10(2): exact or one short
    return n + 1 if value >= 10 ** n else n


def beyond_int64(path: str | None, value: int) -> Invalid:
    return Invalid(Reason.OUT_OF_RANGE, path, f"an integer of {_digits(value)} digits is beyond the 64-bit range")


def _not_finite(path: str, text: str, value: float) -> Invalid:
    """NaN / Infinity spelled out is non_finite_number; any other text that overflows a double (``"1e400"``, 400
    digits) is a real number too large for the 64-bit float every `number` becomes: out_of_range says so."""
    if text.strip().lstrip("+-").lower() in _NON_FINITE_WORDS:
        return Invalid(Reason.NON_FINITE_NUMBER, path, f"{value} is not a finite number")
    return Invalid(Reason.OUT_OF_RANGE, path, f"{preview(text)} is beyond the 64-bit floating-point range")


def string_check(path: str, *, min_length: int = 0, max_length: int = DEFAULT_MAX_STRING,
                 pattern: str | None = None) -> Check:
    regex = re.compile(pattern) if pattern else None

    def check(value: Any) -> str:
        if type(value) is not str:
            if type(value) in (int, float) and not isinstance(value, bool):
                value = repr(value)  # a number where a string is declared: coercible without loss
            else:
                raise Invalid(Reason.INVALID_TYPE, path, f"expected a string, got {_type_name(value)}")
        value = sanitise_string(value)
        n = len(value)
        if n > max_length:
            raise Invalid(Reason.TOO_LONG, path, f"{n} characters, the limit is {max_length}")
        if n < min_length:
            raise Invalid(Reason.TOO_SHORT, path, f"{n} characters, at least {min_length} required")
        if regex is not None and regex.fullmatch(value) is None:
            raise Invalid(Reason.PATTERN_MISMATCH, path, f"{value[:40]!r} does not match {pattern!r}")
        return value

    return check


def _range_guard(path: str, minimum: float | None, maximum: float | None) -> Callable[[float], None]:
    def guard(number: float) -> None:
        if minimum is not None and number < minimum:
            raise Invalid(Reason.OUT_OF_RANGE, path, f"{number} is below the minimum {minimum}")
        if maximum is not None and number > maximum:
            raise Invalid(Reason.OUT_OF_RANGE, path, f"{number} is above the maximum {maximum}")

    return guard


def number_check(path: str, *, minimum: float | None = None, maximum: float | None = None) -> Check:
    guard = _range_guard(path, minimum, maximum)

    def check(value: Any) -> float | int:
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                raise Invalid(Reason.NON_FINITE_NUMBER, path, f"{value} is not a finite number")
        elif kind is int:
            try:
                value = float(value)  # canonical: every `number` is a float downstream
            except OverflowError:
                raise Invalid(Reason.OUT_OF_RANGE, path, f"{preview(value)} is beyond the 64-bit floating-point "
                                                         "range") from None
        elif kind is str:
            text = value
            try:
                value = float(text.strip())
            except ValueError:
                raise Invalid(Reason.INVALID_TYPE, path, f"{text[:40]!r} is not a number") from None
            if not math.isfinite(value):
                raise _not_finite(path, text, value)
        else:
            raise Invalid(Reason.INVALID_TYPE, path, f"expected a number, got {_type_name(value)}")
        guard(value)
        return value

    return check


def integer_check(path: str, *, minimum: float | None = None, maximum: float | None = None) -> Check:
    guard = _range_guard(path, minimum, maximum)

    def check(value: Any) -> int:
        kind = type(value)
        if kind is int:
            pass
        elif kind is float and math.isfinite(value) and value.is_integer():
            value = int(value)
        elif kind is str:
            text = value.strip()
            digits = (text[1:] if text[:1] in ("+", "-") else text).lstrip("0")
            if len(digits) > 19 and digits.isascii() and digits.isdigit():  # beyond int64 (int() refuses 4,300+)
                raise Invalid(Reason.OUT_OF_RANGE, path, f"an integer of {len(digits)} digits is beyond the 64-bit "
                                                         "range")
            try:
                value = int(text)
            except ValueError:
                try:
                    number = float(text)
                except ValueError:
                    number = math.nan
                if math.isinf(number):
                    raise _not_finite(path, text, number) from None
                if not (math.isfinite(number) and number.is_integer()):
                    raise Invalid(Reason.INVALID_TYPE, path, f"{text[:40]!r} is not an integer") from None
                value = int(number)
        elif kind is float and not math.isfinite(value):
            raise Invalid(Reason.NON_FINITE_NUMBER, path, f"{value} is not a finite number")
        else:
            raise Invalid(Reason.INVALID_TYPE, path, f"expected an integer, got {_type_name(value)} {preview(value)}")
        if not INT64_MIN <= value <= INT64_MAX:
            raise beyond_int64(path, value)
        guard(value)
        return value

    return check


def boolean_check(path: str) -> Check:
    words = {"true": True, "false": False}

    def check(value: Any) -> bool:
        if type(value) is bool:
            return value
        if type(value) is str and value.strip().lower() in words:
            return words[value.strip().lower()]
        raise Invalid(Reason.INVALID_TYPE, path, f"expected a boolean, got {_type_name(value)} {preview(value)}")

    return check


def parse_timestamp(value: Any, path: str) -> datetime:
    """ISO-8601 with an offset (or Z) -> aware datetime; anything else is rejected with the field named."""
    if type(value) is not str:
        raise Invalid(Reason.INVALID_TYPE, path, f"expected an ISO-8601 timestamp, got {_type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(Reason.INVALID_TYPE, path, f"{value[:40]!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        raise Invalid(Reason.INVALID_TYPE, path, f"{value[:40]!r} has no UTC offset (add 'Z' or '+hh:mm')")
    return parsed


def format_timestamp(moment: datetime) -> str:
    """Canonical form used everywhere downstream: UTC, millisecond precision, 'Z'."""
    return moment.astimezone(_UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SECOND_CACHE: dict[str, float] = {}
_DIGITS = frozenset("0123456789")


def canonical_timestamp(value: Any, path: str) -> tuple[str, float]:
    """(canonical string, epoch seconds). Already-canonical input skips re-formatting (the common case).

    Canonical input (``YYYY-MM-DDTHH:MM:SS.mmmZ``) is parsed per *second* once and cached: events of a
    batch cluster within seconds, and ``datetime.fromisoformat`` is the costliest step of the envelope.
    """
    if type(value) is str and len(value) == 24 and value[23] == "Z" and value[19] == "." \
            and value[20] in _DIGITS and value[21] in _DIGITS and value[22] in _DIGITS:
        second = value[:19]
        base = _SECOND_CACHE.get(second)
        if base is None:
            base = parse_timestamp(second + "Z", path).timestamp()
            if len(_SECOND_CACHE) > 65536:
                _SECOND_CACHE.clear()
            _SECOND_CACHE[second] = base
        return value, base + int(value[20:23]) / 1000
    parsed = parse_timestamp(value, path)
    if len(value) == 24 and value[23] == "Z" and value[19] == ".":
        return value, parsed.timestamp()
    try:
        return format_timestamp(parsed), parsed.timestamp()
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: a valid datetime whose UTC time is before year 1
        raise Invalid(Reason.OUT_OF_RANGE, path, f"{value[:40]!r} is outside the years 1 to 9999 in UTC") from None


def timestamp_check(path: str) -> Check:
    def check(value: Any) -> str:
        return canonical_timestamp(value, path)[0]

    return check


def enum_check(path: str, values: list[str]) -> Check:
    allowed = frozenset(values)
    shown = ", ".join(values)

    def check(value: Any) -> str:
        if type(value) is str:
            if value in allowed:
                return value
            value = sanitise_string(value)
            if value in allowed:
                return value
        raise Invalid(Reason.NOT_IN_ENUM, path, f"{preview(value)} is not one of: {shown}")

    return check


def geo_point_check(path: str) -> Check:
    lat_check = number_check(f"{path}.lat", minimum=-90, maximum=90)
    lon_check = number_check(f"{path}.lon", minimum=-180, maximum=180)

    def check(value: Any) -> dict[str, float]:
        if type(value) is not dict:
            raise Invalid(Reason.INVALID_TYPE, path, f"expected {{'lat': ..., 'lon': ...}}, got {_type_name(value)}")
        if "lat" not in value or "lon" not in value:
            missing = "lat" if "lat" not in value else "lon"
            raise Invalid(Reason.MISSING_FIELD, f"{path}.{missing}", "a geo point needs both 'lat' and 'lon'")
        if len(value) != 2:
            extra = sorted(set(value) - {"lat", "lon"})[0]
            raise Invalid(Reason.UNKNOWN_PROPERTY, f"{path}.{extra}", "a geo point has only 'lat' and 'lon'")
        return {"lat": lat_check(value["lat"]), "lon": lon_check(value["lon"])}

    return check


def free_value_check(path: str, max_depth: int, max_string: int = DEFAULT_MAX_STRING) -> Check:
    """For undeclared values we keep (extra context keys): sanitise strings, bound depth and length."""

    def walk(value: Any, depth: int, where: str) -> Any:
        kind = type(value)
        if kind is str:
            value = sanitise_string(value)
            if len(value) > max_string:
                raise Invalid(Reason.TOO_LONG, where, f"{len(value)} characters, the limit is {max_string}")
            return value
        if kind is dict or kind is list:
            if depth >= max_depth:
                raise Invalid(Reason.TOO_DEEP, where, f"nesting deeper than {max_depth} levels")
            if kind is dict:  # keys are strings too: a NUL in a key is refused by every JSON store downstream
                return {sanitise_string(k): walk(v, depth + 1, f"{where}.{k}") for k, v in value.items()}
            return [walk(v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value)]
        if kind is float and not math.isfinite(value):
            raise Invalid(Reason.NON_FINITE_NUMBER, where, f"{value} is not a finite number")
        return value

    def check(value: Any) -> Any:
        return walk(value, 0, path)

    return check


def object_check(path: str, fields: dict[str, tuple[Check, bool]], *, additional: Check | None) -> Check:
    """``fields`` maps name -> (check, required). ``additional`` handles undeclared keys (None: refuse them)."""
    required = [name for name, (_, is_required) in fields.items() if is_required]
    checks = {name: check for name, (check, _) in fields.items()}

    def check(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise Invalid(Reason.INVALID_TYPE, path or None, f"expected an object, got {_type_name(value)}")
        out = {}
        for key, item in value.items():
            field_check = checks.get(key)
            if field_check is not None:
                if item is not None:
                    out[key] = field_check(item)
            elif additional is not None:
                out[sanitise_string(key)] = additional(item)
            else:
                raise Invalid(Reason.UNKNOWN_PROPERTY, f"{path}.{key}" if path else key,
                              "not declared in the event type (add it to the YAML, then re-drive)")
        for name in required:
            if out.get(name) is None:
                raise Invalid(Reason.MISSING_FIELD, f"{path}.{name}" if path else name, "required but missing")
        return out

    return check


def list_check(path: str, item: Check, *, min_items: int = 0, max_items: int = 100) -> Check:
    def check(value: Any) -> list[Any]:
        if type(value) is not list:
            raise Invalid(Reason.INVALID_TYPE, path, f"expected a list, got {_type_name(value)}")
        if len(value) > max_items:
            raise Invalid(Reason.TOO_LONG, path, f"{len(value)} items, the limit is {max_items}")
        if len(value) < min_items:
            raise Invalid(Reason.TOO_SHORT, path, f"{len(value)} items, at least {min_items} required")
        return [item(v) for v in value]

    return check


def withhold_values(check: Check) -> Check:
    """For personal-data fields: error messages say what is wrong, never the value (they reach Sentry)."""

    def guarded(value: Any) -> Any:
        try:
            return check(value)
        except Invalid as error:
            raise Invalid(error.reason, error.field, f"invalid personal-data value ({error.reason.value}); "
                                                     f"the value is withheld") from None

    return guarded
