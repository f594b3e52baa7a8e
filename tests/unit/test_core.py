"""The processing core on recorded and hand-made records: normalisation, coercion, and every bad input."""
from __future__ import annotations

import gzip
import json
from datetime import datetime

import orjson
import pytest

from handlers.tracking.errors import Reason
from tests.conftest import EVENTS, record

pytestmark = pytest.mark.unit
ARRIVAL = datetime.fromisoformat("2026-11-26T10:00:05Z").timestamp()


def lead(**changes):
    event = json.loads((EVENTS / "lead_native.json").read_text())
    for dotted, value in changes.items():
        node = event
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return event


def run(processor, payload, arrival=ARRIVAL):
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return processor.process([record(data, arrival=arrival)])


def test_native_event_is_normalised_and_coerced(processor):
    result = run(processor, lead(timestamp="2026-11-26T11:00:00.5+01:00"))
    [event] = result.events
    assert event.type == "Lead" and event.version == 1
    assert event.timestamp == "2026-11-26T10:00:00.500Z"
    assert event.properties["offer_amount"] == 200.5  # "200.50" coerced to a number
    assert event.received_at == "2026-11-26T10:00:05.000Z"
    assert not result.rejections and not result.duplicates


def test_strings_are_sanitised(processor):
    payload = lead(properties__conversation_id="  c\x00onv\u200b-1\t ", context__location__city="Ma\u0301drid")
    [event] = run(processor, payload).events
    assert event.properties["conversation_id"] == "conv\u200b-1"
    assert event.context["location"]["city"] == "M\u00e1drid"  # NFC


def test_segment_python_batch_is_normalised(processor):
    result = run(processor, (EVENTS / "segment_python_batch.json").read_bytes())
    assert [e.type for e in result.events] == ["Lead", "Screen", "Identify"]
    lead_event, screen, identify = result.events
    assert lead_event.user_id == "u-1001" and lead_event.anonymous_id is None
    assert lead_event.timestamp == "2026-11-26T10:00:00.123Z"
    assert lead_event.sent_at == "2026-11-26T10:00:03.000Z"  # inherited from the batch
    assert screen.properties == {"name": "Home"}
    assert identify.properties == {"email": "ana@example.com", "country": "ES"}


def test_gzip_records_are_accepted(processor):
    assert len(run(processor, gzip.compress(orjson.dumps(lead()))).events) == 1


def test_in_batch_duplicates_are_counted_not_quarantined(processor):
    data = orjson.dumps(lead())
    result = processor.process([record(data, "1", ARRIVAL), record(data, "2", ARRIVAL)])
    assert len(result.events) == 1 and len(result.duplicates) == 1 and not result.rejections


def deep(levels):
    node = {}
    for _ in range(levels):
        node = {"a": node}
    return node


BAD_INPUTS = [
    ("not JSON", b'{"type": "Lead", ', Reason.NOT_JSON, None),
    ("invalid UTF-8", b'{"type": "Lead\xff\xfe"}', Reason.INVALID_UTF8, None),
    ("JSON array", b'[1, 2]', Reason.NOT_AN_OBJECT, None),
    ("missing messageId", lead(messageId=...), Reason.MISSING_FIELD, "messageId"),
    ("missing type", lead(type=...), Reason.MISSING_FIELD, "type"),
    ("missing identity", lead(userId=...), Reason.MISSING_FIELD, "userId"),
    ("missing required property", lead(properties__item_id=...), Reason.MISSING_FIELD, "properties.item_id"),
    ("unknown event type", lead(type="ItemTeleported"), Reason.UNKNOWN_EVENT_TYPE, "type"),
    ("unknown property", lead(properties__colour="red"), Reason.UNKNOWN_PROPERTY, "properties.colour"),
    ("not coercible", lead(properties__price="cheap"), Reason.INVALID_TYPE, "properties.price"),
    ("out of range", lead(properties__price=-5), Reason.OUT_OF_RANGE, "properties.price"),
    ("not in enum", lead(properties__channel="pigeon"), Reason.NOT_IN_ENUM, "properties.channel"),
    ("pattern", lead(properties__item_id="it 123!"), Reason.PATTERN_MISMATCH, "properties.item_id"),
    ("string over its limit", lead(properties__conversation_id="x" * 65), Reason.TOO_LONG,
     "properties.conversation_id"),
    ("record over 1 MiB", gzip.compress(b'{"type":"Lead","pad":"' + b"x" * (1024 * 1024) + b'"}'),
     Reason.RECORD_TOO_LARGE, None),
    ("timestamp far in the future", lead(timestamp="2026-11-29T10:00:00Z"), Reason.TIMESTAMP_IN_FUTURE, "timestamp"),
    ("timestamp far in the past", lead(timestamp="2026-09-01T10:00:00Z"), Reason.TIMESTAMP_TOO_OLD, "timestamp"),
    ("timestamp without offset", lead(timestamp="2026-11-26T10:00:00"), Reason.INVALID_TYPE, "timestamp"),
    ("NaN literal", orjson.dumps(lead()).replace(b'"price":250', b'"price":NaN'), Reason.NON_FINITE_NUMBER, None),
    ("Infinity string", lead(properties__price="Infinity"), Reason.NON_FINITE_NUMBER, "properties.price"),
    ("nesting deeper than the limit", lead(context__custom=deep(12)), Reason.TOO_DEEP, None),
    ("corrupt gzip", b"\x1f\x8b\x08\x00garbage", Reason.BAD_COMPRESSION, None),
]


@pytest.mark.parametrize("payload, reason, field", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_quarantined_with_its_reason(processor, payload, reason, field):
    result = run(processor, payload)
    assert not result.events
    [rejection] = result.rejections
    assert rejection.reason is reason
    if field is not None:
        assert rejection.field == field
    assert rejection.message and rejection.sequence_number == "1"
    assert rejection.raw  # the exact input is kept for the quarantine


def test_bad_event_in_a_batch_does_not_stop_the_others(processor):
    good, bad = lead(), lead(messageId="other", properties__price="cheap")
    result = run(processor, {"batch": [good, bad, "not an object"]})
    assert len(result.events) == 1
    assert [(r.index, r.reason) for r in result.rejections] == [(1, Reason.INVALID_TYPE), (2, Reason.NOT_AN_OBJECT)]
    assert orjson.loads(result.rejections[0].raw)["messageId"] == "other"


def test_every_unit_ends_in_exactly_one_bucket(processor):
    records = [record(orjson.dumps(lead(messageId=f"m{i % 7}")), str(i), ARRIVAL) for i in range(20)]
    records.append(record(b"nope", "99", ARRIVAL))
    result = processor.process(records)
    assert (len(result.events), len(result.duplicates), len(result.rejections)) == (7, 13, 1)
    assert result.units == 21


def test_rejection_describes_record_field_and_reason(processor):
    [rejection] = run(processor, lead(properties__price=-5)).rejections
    text = rejection.describe()
    assert "record 1" in text and "properties.price" in text and "out_of_range" in text and "Lead" in text


@pytest.mark.parametrize("epoch", [0.0, 1764151200.9996, 1764151200.9999996, 1764151200.123, 1764151200.0004,
                                   *[1.0e9 + i * 7919.123457 for i in range(200)]])
def test_arrival_formatting_matches_datetime_formatting(epoch):
    from datetime import timezone

    from handlers.schema.fields import format_timestamp
    from handlers.tracking.processor import format_timestamp_epoch

    assert format_timestamp_epoch(epoch) == format_timestamp(datetime.fromtimestamp(epoch, timezone.utc))
