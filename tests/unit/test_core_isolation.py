"""Isolation per record in the processing core (issue 11): no input makes ``Processor.process`` raise, and every
unit ends in exactly one bucket — deep nesting, faults inside the core, BOMs, huge numbers, Segment calls."""
from __future__ import annotations

import dataclasses
import gzip
import json
from datetime import datetime

import orjson
import pytest

from handlers.schema.event_types import load_catalog
from handlers.tracking.errors import Reason, Rejection
from handlers.tracking.processor import Duplicate, Event, Processor, dumps_json
from handlers.tracking.settings import load_settings
from tests.conftest import EVENTS, REPO, record

pytestmark = pytest.mark.unit
ARRIVAL = datetime.fromisoformat("2026-11-26T10:00:05Z").timestamp()
BOM = b"\xef\xbb\xbf"


def lead(**changes):
    event = json.loads((EVENTS / "lead_native.json").read_text())
    for dotted, value in changes.items():
        node = event
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return event


def run(processor, *payloads):
    records = [record(p if isinstance(p, bytes) else dumps_json(p), str(i + 1), ARRIVAL)
               for i, p in enumerate(payloads)]
    return processor.process(records)


def units(result):
    """(sequence number, index) of every unit, per bucket."""
    return ([(e.sequence_number, e.index) for e in result.events],
            [(r.sequence_number, r.index) for r in result.rejections],
            [(d.sequence_number, d.index) for d in result.duplicates])


def nested(depth, leaf=1):
    """``depth`` levels of lists around ``leaf``, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def deep_bytes(depth):
    return b"[" * depth + b"1" + b"]" * depth


# -- 1. deep nesting ---------------------------------------------------------------------------------------
def test_an_event_nested_2000_deep_is_too_deep_and_the_batch_goes_on(processor):
    good = orjson.dumps(lead())
    poisoned = orjson.dumps(lead(messageId="deep")).replace(b'"price":250', b'"a":' + deep_bytes(2000))
    result = run(processor, good.replace(b"a0f1c2d3-0001", b"first"), poisoned, good)
    assert units(result) == ([("1", 0), ("3", 0)], [("2", 0)], [])
    [rejection] = result.rejections
    assert rejection.reason is Reason.TOO_DEEP and rejection.field is None
    assert rejection.message == "JSON nesting exceeds the parser's limit (1024 levels)"
    assert rejection.raw == poisoned


def test_deep_nesting_under_an_unknown_top_level_key_is_too_deep_not_an_escape(processor):
    # msgspec (the fast path) used to skip unknown keys, recursing: a RecursionError on this
    data = orjson.dumps(lead())[:-1] + b',"extra":' + deep_bytes(5000) + b"}"
    [rejection] = run(processor, data).rejections
    assert rejection.reason is Reason.TOO_DEEP


@pytest.mark.parametrize("depth", [9, 100, 300, 1000, 1019])
def test_context_nesting_beyond_max_depth_is_too_deep_at_any_depth_orjson_parses(processor, depth):
    [rejection] = run(processor, lead(context__custom=nested(depth))).rejections
    assert rejection.reason is Reason.TOO_DEEP
    assert rejection.field.startswith("context") and rejection.message == "nesting deeper than 8 levels"


@pytest.mark.parametrize("depth", [9, 300, 1019])
def test_nested_traits_are_too_deep_and_their_value_withheld(processor, depth):
    [rejection] = run(processor, lead(context__traits={"a": nested(depth)})).rejections
    assert rejection.reason is Reason.TOO_DEEP
    assert rejection.message == "invalid personal-data value (too_deep); the value is withheld"


@pytest.mark.parametrize("field, value, reason, message", [
    ("message_length", nested(1000), Reason.INVALID_TYPE, "expected an integer, got array […]"),
    ("channel", nested(1000), Reason.NOT_IN_ENUM, "[…] is not one of: chat, offer, call"),
    ("channel", {"a": nested(1000)}, Reason.NOT_IN_ENUM, "{…} is not one of: chat, offer, call"),
    ("price", nested(1000), Reason.INVALID_TYPE, "expected a number, got array"),
])
def test_a_deep_value_in_a_declared_property_is_described_without_recursing(processor, field, value, reason,
                                                                           message):
    [rejection] = run(processor, lead(**{f"properties__{field}": value})).rejections
    assert (rejection.reason, rejection.field, rejection.message) == (reason, f"properties.{field}", message)


def test_a_deep_batch_item_is_quarantined_with_its_own_json(processor):
    deep_item = lead(messageId="deep", context__custom=nested(600))  # deeper than orjson writes (254)
    result = run(processor, {"batch": [lead(), deep_item, lead(messageId="third")]})
    assert units(result) == ([("1", 0), ("1", 2)], [("1", 1)], [])
    [rejection] = result.rejections
    assert rejection.reason is Reason.TOO_DEEP and rejection.index == 1
    assert orjson.loads(rejection.raw) == deep_item


def test_dumps_json_writes_any_depth_like_orjson():
    for value in ({"a": [1, {"b": None, "c": "é\n"}], "d": True, "e": 1.5}, [], {}, nested(3, {"x": []})):
        assert dumps_json(value) == orjson.dumps(value)
    deep = {"k": nested(900, {"z": [1, 2]}), "y": "é"}
    assert orjson.loads(dumps_json(deep)) == deep


# -- 2. whatever goes wrong inside the core ------------------------------------------------------------
@pytest.fixture
def fresh():
    """A processor over its own catalog, so faults can be planted in its compiled checks."""
    catalog = load_catalog(REPO / "event_types")
    return Processor(catalog, load_settings(), fast_path=False)


def plant(processor, type_name, fault, when=lambda properties: True):
    """Replace a type's compiled check by one that raises ``fault`` (for matching properties).

    A FAKE fault: the real checks no longer raise anything but Invalid, so a bug (KeyError, TypeError), a
    RecursionError or a MemoryError inside one cannot be produced otherwise.
    """
    event_type = processor.catalog.types[type_name]
    real = event_type.check

    def faulty(properties):
        if when(properties):
            raise fault
        return real(properties)

    processor.catalog.types[type_name] = dataclasses.replace(event_type, check=faulty)


@pytest.mark.parametrize("fault", [KeyError("seller_id"), TypeError("unhashable type: 'dict'"),
                                   RecursionError("maximum recursion depth exceeded"), MemoryError()])
def test_a_fault_in_a_compiled_check_quarantines_that_record_only(fresh, fault):
    plant(fresh, "Lead", fault, when=lambda p: p.get("item_id") == "poison")
    result = run(fresh, lead(messageId="m1"), lead(messageId="m2", properties__item_id="poison"),
                 lead(messageId="m3"))
    assert units(result) == ([("1", 0), ("3", 0)], [("2", 0)], [])
    [rejection] = result.rejections
    name = type(fault).__name__
    assert rejection.reason is Reason.INTERNAL_ERROR and rejection.field is None
    assert rejection.message == f"the core failed on this record: {name}: {fault}"
    assert rejection.event_type is None and orjson.loads(rejection.raw)["messageId"] == "m2"
    assert rejection.exception.startswith("Traceback") and f"{name}" in rejection.exception
    assert "faulty" in rejection.exception  # the traceback names where it happened


def test_a_fault_on_one_event_of_a_segment_batch_quarantines_that_event_only(fresh):
    plant(fresh, "Lead", KeyError("boom"), when=lambda p: p.get("item_id") == "poison")
    items = [lead(messageId="m1"), lead(messageId="m2", properties__item_id="poison"), lead(messageId="m1"),
             lead(messageId="m3")]
    result = run(fresh, {"batch": items, "sentAt": "2026-11-26T10:00:03Z"})
    assert units(result) == ([("1", 0), ("1", 3)], [("1", 1)], [("1", 2)])
    [rejection] = result.rejections
    assert rejection.reason is Reason.INTERNAL_ERROR and rejection.index == 1
    assert rejection.message == "the core failed on this event: KeyError: 'boom'"
    assert rejection.event_type == "Lead" and rejection.app_version == "4.12.0"
    assert orjson.loads(rejection.raw) == {"sentAt": "2026-11-26T10:00:03Z", **items[1]}


def test_when_even_quarantining_an_event_fails_the_whole_record_is_rolled_back_and_rejected(fresh, monkeypatch):
    plant(fresh, "Lead", KeyError("boom"), when=lambda p: p.get("item_id") == "poison")
    real = Processor._internal_error

    def failing(self, result, record, index, exc, item):
        # FAKE: quarantining a batch item cannot fail short of memory exhaustion
        if item is not None:
            raise MemoryError()
        return real(self, result, record, index, exc, item)

    monkeypatch.setattr(Processor, "_internal_error", failing)
    batch = {"batch": [lead(messageId="m1"), lead(messageId="m1"), lead(messageId="bad", properties__item_id="poison")]}
    result = run(fresh, batch, lead(messageId="m1"))
    # record 1 is one unit again (index 0) and left nothing behind, so m1 of record 2 is not a duplicate
    assert units(result) == ([("2", 0)], [("1", 0)], [])
    [rejection] = result.rejections
    assert rejection.reason is Reason.INTERNAL_ERROR
    assert rejection.message == "the core failed on this record: MemoryError: "
    assert orjson.loads(rejection.raw) == batch


def test_a_fault_in_the_fast_path_quarantines_that_record_only(processor, monkeypatch):
    # FAKE: the fast decoder only returns a Struct or None; a bug raising from it cannot be produced otherwise
    def broken(data):
        raise TypeError("fast path bug")

    monkeypatch.setattr(processor.fast, "decode", broken)
    [rejection] = run(processor, lead()).rejections
    assert rejection.reason is Reason.INTERNAL_ERROR
    assert rejection.message == "the core failed on this record: TypeError: fast path bug"


def test_invalid_utf8_under_an_unknown_top_level_key_is_invalid_utf8_on_the_fast_path_too(processor):
    # msgspec used to skip an unknown key unread, accepting what orjson (the generic path) refuses
    clean = orjson.dumps(lead(properties__offer_amount=200.5))
    assert processor.fast.eligible(clean) and processor.fast.decode(clean) is not None  # a fast-path event
    data = clean[:-1] + b',"s\x80ntAt":"x"}'
    assert processor.fast.eligible(data)
    [rejection] = run(processor, data).rejections
    assert rejection.reason is Reason.INVALID_UTF8


def test_a_record_whose_data_is_not_even_a_string_is_quarantined(processor):
    from handlers.core.kinesis import RawRecord

    good = record(orjson.dumps(lead()), "2", ARRIVAL)
    result = processor.process([RawRecord("1", "pk", None, ARRIVAL), good])  # type: ignore[arg-type]
    assert units(result) == ([("2", 0)], [("1", 0)], [])
    assert result.rejections[0].reason is Reason.INTERNAL_ERROR and result.rejections[0].raw == b""


def test_a_decompression_bomb_is_record_too_large(processor):
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MiB of spaces in ~64 KiB
    assert len(bomb) < 100_000
    result = run(processor, bomb, lead())
    assert units(result) == ([("2", 0)], [("1", 0)], [])
    assert result.rejections[0].reason is Reason.RECORD_TOO_LARGE
    assert result.rejections[0].message == "decompresses to more than 1048576 bytes"


def test_rejection_keeps_its_positional_constructor_and_exception_defaults_to_none(processor):
    rejection = Rejection(Reason.NOT_JSON, None, "x", "1", 0, None, None, b"x")
    assert rejection.exception is None
    assert run(processor, lead(properties__price=-5)).rejections[0].exception is None


# -- 3. byte order marks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("wrap", [lambda d: BOM + d, lambda d: gzip.compress(BOM + d)], ids=["plain", "gzip"])
def test_a_utf8_bom_before_the_json_is_ignored(processor, wrap):
    result = run(processor, wrap(orjson.dumps(lead())), wrap(orjson.dumps({"batch": [lead(messageId="b")]})))
    assert [e.message_id for e in result.events] == ["a0f1c2d3-0001", "b"] and not result.rejections


def test_a_bom_anywhere_else_is_still_not_json(processor):
    [rejection] = run(processor, b" " + BOM + orjson.dumps(lead())).rejections
    assert rejection.reason is Reason.NOT_JSON


# -- 4. numbers orjson refuses -----------------------------------------------------------------------------
def test_a_400_digit_integer_is_out_of_range_not_nan(processor):
    data = orjson.dumps(lead()).replace(b'"offer_amount":"200.50"', b'"offer_amount":1' + b"0" * 399)
    [rejection] = run(processor, data).rejections
    assert (rejection.reason, rejection.field) == (Reason.OUT_OF_RANGE, None)
    assert rejection.message == "an integer of 400 digits is beyond the 64-bit range"


@pytest.mark.parametrize("literal, message", [
    (b"-" + b"9" * 350, "an integer of 350 digits is beyond the 64-bit range"),
    (b"1e400", "1e400 is beyond the 64-bit floating-point range"),
    (b"-2.5E+999", "-2.5E+999 is beyond the 64-bit floating-point range"),
])
def test_numbers_beyond_a_double_are_out_of_range(processor, literal, message):
    [rejection] = run(processor, orjson.dumps(lead()).replace(b'"price":250', b'"price":' + literal)).rejections
    assert (rejection.reason, rejection.message) == (Reason.OUT_OF_RANGE, message)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_still_non_finite(processor, literal):
    [rejection] = run(processor, orjson.dumps(lead()).replace(b'"price":250', b'"price":' + literal)).rejections
    assert (rejection.reason, rejection.message) == (Reason.NON_FINITE_NUMBER,
                                                     "NaN or Infinity is not a valid JSON number")


@pytest.mark.parametrize("data", [b'{NaN: 1}', b'{"a": 01}', b'{"a": "\\ud800"}', b'{"a": Infinityx}'])
def test_other_json_errors_are_not_json(processor, data):
    [rejection] = run(processor, data).rejections
    assert rejection.reason is Reason.NOT_JSON and rejection.message.startswith("not JSON: ")


@pytest.mark.parametrize("value, message", [
    ("1" + "0" * 399, "'1000000000000000000000000000000000000000' is beyond the 64-bit floating-point range"),
    ("1e400", "'1e400' is beyond the 64-bit floating-point range"),
])
def test_a_number_string_beyond_a_double_is_out_of_range(processor, value, message):
    [rejection] = run(processor, lead(properties__offer_amount=value)).rejections
    assert (rejection.reason, rejection.field, rejection.message) == (Reason.OUT_OF_RANGE,
                                                                       "properties.offer_amount", message)


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("value, message", [
    (2 ** 63, "an integer of 19 digits is beyond the 64-bit range"),  # orjson reads up to 2**64 - 1 as an int
    (1e300, "an integer of 301 digits is beyond the 64-bit range"),  # an integral float, as integer_check coerces
    ("1" + "0" * 30, "an integer of 31 digits is beyond the 64-bit range"),
])
def test_an_integer_field_holds_64_bits_on_both_paths(catalog, fast_path, value, message):
    processor = Processor(catalog, load_settings(), fast_path=fast_path)
    search = {"type": "Search", "messageId": "s-1", "userId": "u-1", "timestamp": "2026-11-26T10:00:00.000Z",
              "properties": {"search_id": "s", "query": "bici", "language": "es", "results_count": value}}
    [rejection] = run(processor, search).rejections
    assert (rejection.reason, rejection.field, rejection.message) == (Reason.OUT_OF_RANGE,
                                                                       "properties.results_count", message)


# -- 5. Segment page / group / alias -------------------------------------------------------------------
@pytest.mark.parametrize("call, name", [("page", "Page"), ("group", "Group"), ("alias", "Alias")])
def test_segment_calls_without_a_type_are_quarantined_under_their_capitalised_name(processor, call, name):
    result = run(processor, lead(type=call), {"batch": [lead(type=call, messageId="b")]})
    assert [(r.event_type, r.reason, r.index) for r in result.rejections] == [
        (name, Reason.UNKNOWN_EVENT_TYPE, 0), (name, Reason.UNKNOWN_EVENT_TYPE, 0)]
    assert all(r.message.startswith(f"'{name}' has no definition") for r in result.rejections)


@pytest.mark.parametrize("kind", [{"a": 1}, ["track"], 5])
def test_a_type_that_is_not_a_string_is_invalid_type(processor, kind):
    [rejection] = run(processor, lead(type=kind)).rejections
    assert (rejection.reason, rejection.field, rejection.event_type) == (Reason.INVALID_TYPE, "type", None)


@pytest.mark.parametrize("properties", [[["name", "x"]], "ab", 7])
def test_a_screen_call_with_properties_that_are_not_an_object_is_invalid_type(processor, properties):
    screen = {"type": "screen", "name": "Home", "properties": properties, "messageId": "s", "userId": "u",
              "timestamp": "2026-11-26T10:00:00Z"}
    [rejection] = run(processor, screen).rejections
    assert (rejection.reason, rejection.field, rejection.event_type) == (Reason.INVALID_TYPE, "properties", "Screen")


def test_a_timestamp_outside_the_utc_calendar_is_out_of_range(processor):
    [rejection] = run(processor, lead(timestamp="0001-01-01T00:00:00+01:00")).rejections
    assert (rejection.reason, rejection.field) == (Reason.OUT_OF_RANGE, "timestamp")
    assert rejection.message == "'0001-01-01T00:00:00+01:00' is outside the years 1 to 9999 in UTC"


# -- 6. every unit is (shard, sequence number, index) ------------------------------------------------------
def test_events_duplicates_and_rejections_carry_their_index_in_the_record(processor):
    batch = {"batch": [lead(messageId="m1"), lead(messageId="m2"), lead(messageId="m1"),
                       lead(messageId="m3", properties__price=-1), "not an object"]}
    result = run(processor, batch, lead(messageId="m2"))
    assert units(result) == ([("1", 0), ("1", 1)], [("1", 3), ("1", 4)], [("1", 2), ("2", 0)])
    assert [type(d) for d in result.duplicates] == [Duplicate, Duplicate]


def test_event_keeps_its_positional_constructor_with_index_zero():
    event = Event("m", "Lead", 1, "2026-11-26T10:00:00.123Z", 0.0, "2026-11-26T10:00:01.000Z", None, "u", None,
                  {}, {}, "seq")
    assert event.index == 0 and Duplicate("m", "seq").index == 0
