"""Property-based: whatever bytes arrive, every unit of every record ends in exactly one bucket, nothing escapes
the core (nor the two other consumers that share it: the statistics aggregator and the search indexer's fold),
and the core never needs its internal_error safety net on real input.

Inputs start from one valid event of every type in event_types/ (from the traffic generator, natively and as
unmodified Segment calls) and are then cut, mutated byte by byte or value by value, nested deep or wide, gzipped
(and gzip-bombed), prefixed with a BOM, given huge integers and NaN, or mixed into Segment batches of good and
bad items.
"""
from __future__ import annotations

import copy
import gzip
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.schema.event_types import load_catalog
from handlers.search.indexer import changes_of, listing_events
from handlers.search.listings import LISTED, ListingState, fold
from handlers.statistics.aggregate import WindowAggregator
from handlers.statistics.definitions import load_metrics
from handlers.tracking.errors import Reason
from handlers.tracking.processor import Processor, dumps_json
from handlers.tracking.settings import load_settings
from letgo.traffic import generate
from tests.conftest import record

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
ARRIVAL = NOW.timestamp()
BOM = b"\xef\xbb\xbf"
MIB = 1024 * 1024
CATALOG = load_catalog(REPO / "event_types")
FAST = Processor(CATALOG, load_settings())
GENERIC = Processor(CATALOG, load_settings(), fast_path=False)
AGGREGATOR = WindowAggregator(load_metrics(REPO / "metrics", CATALOG))
SEGMENT_TYPES = {"track": None, "screen": "Screen", "identify": "Identify"}
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _examples() -> list[dict[str, Any]]:
    """One valid event per (type, wire format) of the traffic generator: native envelope and Segment call."""
    plan = generate(600, seed=3, now=NOW, malformed_share=0, duplicate_share=0, batch_share=0.2, gzip_share=0)
    found: dict[tuple[str, bool], dict[str, Any]] = {}
    for traffic_record in plan.records:
        payload = orjson.loads(traffic_record.data)
        for item in payload.get("batch", [payload]):
            segment = item["type"] in SEGMENT_TYPES
            name = (item["event"] if item["type"] == "track" else SEGMENT_TYPES[item["type"]]) if segment \
                else item["type"]
            found.setdefault((name, segment), item)
    return [found[key] for key in sorted(found)]


EXAMPLES = _examples()
INDEXED = ListingState("itm-1", gone=1)  # what the index may already hold of a listing: a (very old) tombstone
TYPES_COVERED = {e["event"] if e["type"] == "track" else SEGMENT_TYPES.get(e["type"], e["type"]) for e in EXAMPLES}
# a gzip bomb (~2 KiB that inflates to 2 MiB) and a valid event padded past 1 MiB, gzipped: built once
BOMBS = [gzip.compress(b" " * (2 * MIB)),
         gzip.compress(orjson.dumps(EXAMPLES[0])[:-1] + b" " * MIB + b"}")]


def test_the_examples_cover_every_event_type():
    assert TYPES_COVERED == set(CATALOG.types)
    result = FAST.process([record(orjson.dumps(e), str(i), ARRIVAL) for i, e in enumerate(EXAMPLES)])
    assert len(result.events) == len(EXAMPLES), [r.describe() for r in result.rejections]


# -- strategies --------------------------------------------------------------------------------------------
json_scalars = (st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.text(max_size=12)
                | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(["", " x ", "120.50", "1e400",
                                                                                      "Infinity", "2026-11-26T10:00Z"]))
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=10)
example = st.sampled_from(EXAMPLES).map(copy.deepcopy)


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) inside ``value``, found without recursion."""
    slots, stack = [], [value]
    while stack:
        node = stack.pop()
        pairs = node.items() if type(node) is dict else enumerate(node) if type(node) is list else ()
        for key, child in pairs:
            slots.append((node, key))
            stack.append(child)
    return slots


@st.composite
def mutated(draw, base=example) -> dict[str, Any]:
    """A valid event with a few values replaced, keys removed or keys added (many stay valid)."""
    event = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(event)
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            container[key] = draw(json_values)
        elif action == "delete" and type(container) is dict:
            del container[key]
        elif type(container) is dict:
            container[draw(st.text(max_size=8))] = draw(json_values)
    return event


def _nest(kind: str, depth: int) -> bytes:
    if kind == "list":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def spliced(draw) -> bytes:
    """A valid event with one value (anywhere) replaced by raw JSON text: deep or wide nesting, and what no
    Python value can be written as — integers of hundreds of digits, NaN / Infinity, numbers beyond a double."""
    event = draw(example)
    container, key = draw(st.sampled_from(_slots(event)))
    container[key] = "__SPLICE__"
    text = draw(st.one_of(
        st.builds(_nest, st.sampled_from(["list", "dict"]), st.integers(1, 3000)),
        st.integers(1, 60_000).map(lambda n: b"[" + b",".join([b"1"] * n) + b"]"),
        st.integers(1, 20_000).map(lambda n: b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(n)) + b"}"),
        st.builds(lambda sign, n: sign + b"1" + b"0" * (n - 1), st.sampled_from([b"", b"-"]), st.integers(1, 500)),
        st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1.5e999", b"18446744073709551615",
                         b"9223372036854775808", b"-9223372036854775809", b"1e-400"]),
    ))
    return orjson.dumps(event).replace(b'"__SPLICE__"', text, 1)


@st.composite
def byte_mutated(draw) -> bytes:
    data = bytearray(orjson.dumps(draw(example)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["set", "insert", "delete"]))
        byte = draw(st.integers(0, 255))
        if action == "insert" or not data:
            data[at:at] = bytes([byte])
        elif action == "set":
            data[min(at, len(data) - 1)] = byte
        else:
            del data[min(at, len(data) - 1)]
    return bytes(data)


@st.composite
def truncated(draw) -> bytes:
    data = orjson.dumps(draw(example))
    return data[:draw(st.integers(0, len(data) - 1))]


def _deep_item(depth: int) -> dict[str, Any]:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return {**EXAMPLES[-1], "messageId": f"deep-{depth}", "context": {"custom": value}}


batch_item = st.one_of(example, example, mutated(), json_scalars, st.lists(json_scalars, max_size=2),
                       st.integers(1, 1000).map(_deep_item))


@st.composite
def segment_batch(draw) -> tuple[bytes, int]:
    """A Segment batch of good, bad and repeated items; (bytes, number of items = units it must give)."""
    items = draw(st.lists(batch_item, min_size=0, max_size=8))
    if items and draw(st.booleans()):
        items.append(draw(st.sampled_from(items)))  # a repeated item: a duplicate if it is valid
    payload: dict[str, Any] = {"batch": items}
    if draw(st.booleans()):
        payload["sentAt"] = "2026-11-26T11:59:59.000Z"
    if draw(st.booleans()):
        payload["context"] = draw(st.sampled_from([{"library": {"name": "analytics-python"}}, {"x": [[1]]}, "ctx"]))
    return dumps_json(payload), max(1, len(items))


def _unknown(data: bytes) -> tuple[bytes, None]:
    return data, None  # units unknown up front: only "1 or more, each index once" can be asserted


def _wrap(draw: Any, data: bytes) -> tuple[bytes, bool]:
    """Optionally a BOM in front and / or gzip around, as clients send it; True if the gzip was cut short."""
    if draw(st.booleans()):
        data = BOM + data
    if draw(st.integers(0, 4)) == 0:
        data = gzip.compress(data, mtime=0)
        if draw(st.integers(0, 3)) == 0:
            return data[:draw(st.integers(0, len(data) - 1))], True
    return data, False


@st.composite
def input_record(draw) -> tuple[bytes, int | None]:
    kind = draw(st.sampled_from(["valid", "mutated", "spliced", "bytes", "byte_mutated", "truncated", "batch",
                                 "batch", "bomb"]))
    if kind == "valid":
        data, units = orjson.dumps(draw(example)), 1
    elif kind == "mutated":
        data, units = dumps_json(draw(mutated())), 1
    elif kind == "spliced":
        data, units = draw(spliced()), None
    elif kind == "bytes":
        data, units = _unknown(draw(st.binary(max_size=200)))
    elif kind == "byte_mutated":
        data, units = _unknown(draw(byte_mutated()))
    elif kind == "truncated":
        data, units = _unknown(draw(truncated()))
    elif kind == "batch":
        data, units = draw(segment_batch())
    else:
        return draw(st.sampled_from(BOMBS)), 1
    wrapped, cut = _wrap(draw, data)
    return wrapped, 1 if cut else units  # a cut-off gzip is one bad record


# -- the properties ----------------------------------------------------------------------------------------
def check_buckets(records, result, expected_units) -> None:
    found: dict[str, list[int]] = defaultdict(list)
    for unit in (*result.events, *result.rejections, *result.duplicates):
        found[unit.sequence_number].append(unit.index)
    assert set(found) == {r.sequence_number for r in records}, "a record left no unit in any bucket"
    for r, units in zip(records, expected_units):
        indices = sorted(found[r.sequence_number])
        assert indices == list(range(len(indices))), f"record {r.sequence_number}: indices {indices}"
        if units is not None:
            assert len(indices) == units, f"record {r.sequence_number}: {len(indices)} units, {units} expected"
    internal = [r.describe() + "\n" + (r.exception or "") for r in result.rejections
                if r.reason is Reason.INTERNAL_ERROR]
    assert not internal, internal[0]


def check_consumers(result) -> None:
    for event in result.events:  # what the consumer writes: the Firehose line and the PostgreSQL columns
        assert orjson.loads(event.to_json())["messageId"] == event.message_id
        event.context_json(), event.properties_json()
    state = AGGREGATOR.add({}, result.events)
    AGGREGATOR.rows(state)
    listing = listing_events(result.events)
    listed = {e.message_id for e in listing if e.type == LISTED}
    skipped: list[tuple[str, str]] = []
    changes = changes_of(listing, skipped)
    assert all(message_id and why for message_id, why in skipped)
    assert not {m for m, _ in skipped} & listed, skipped  # a valid ItemListed always makes a change
    # merged into nothing, and into a state the index already holds for each listing: never raises
    for known in ({}, {c.item_id: replace(INDEXED, item_id=c.item_id) for c in changes}):
        for state in fold(changes, known).values():
            state.ad()  # a live state makes a valid ad (InvalidAd here is a bug)


def run_batch(inputs: list[tuple[bytes, int | None]]) -> None:
    records = [record(data, str(i), ARRIVAL) for i, (data, _) in enumerate(inputs)]
    expected = [units for _, units in inputs]
    fast = FAST.process(records)  # raising here fails the test: nothing may escape
    check_buckets(records, fast, expected)
    generic = GENERIC.process(records)
    assert [e.to_json() for e in fast.events] == [e.to_json() for e in generic.events]
    assert ([(r.sequence_number, r.index, r.reason) for r in fast.rejections]
            == [(r.sequence_number, r.index, r.reason) for r in generic.rejections])
    assert ([(d.sequence_number, d.index) for d in fast.duplicates]
            == [(d.sequence_number, d.index) for d in generic.duplicates])
    check_consumers(fast)


@SETTINGS
@given(st.lists(input_record(), min_size=1, max_size=6))
def test_every_unit_of_every_record_ends_in_exactly_one_bucket(inputs):
    run_batch(inputs)


@SETTINGS
@given(st.lists(st.one_of(example.map(orjson.dumps), mutated().map(dumps_json)), min_size=1, max_size=12))
def test_valid_and_nearly_valid_events_never_break_the_core_the_aggregator_or_the_indexer(payloads):
    run_batch([(data, 1) for data in payloads])


@SETTINGS
@given(st.lists(segment_batch(), min_size=1, max_size=4))
def test_segment_batches_give_one_unit_per_item(batches):
    run_batch(batches)
