"""The msgspec fast path must accept exactly what the generic path accepts, with identical output."""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from handlers.tracking.processor import Processor
from handlers.tracking.settings import load_settings
from letgo.traffic import generate
from tests.conftest import record

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def both(catalog):
    return Processor(catalog, load_settings(), fast_path=True), Processor(catalog, load_settings(), fast_path=False)


def outcome(processor, records):
    result = processor.process(records)
    return ([e.to_json() for e in result.events],
            [(r.sequence_number, r.index, r.reason, r.field, r.message) for r in result.rejections],
            [(d.message_id, d.sequence_number) for d in result.duplicates])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_and_generic_paths_agree_on_generated_traffic(both, seed):
    plan = generate(3000, seed=seed, now=NOW)
    records = [record(r.data, str(i), NOW.timestamp()) for i, r in enumerate(plan.records)]
    fast, generic = both
    assert outcome(fast, records) == outcome(generic, records)


def test_fast_path_takes_most_clean_native_events(both):
    fast, _ = both
    plan = generate(2000, seed=4, now=NOW)
    taken = sum(1 for r in plan.records if fast.fast.eligible(r.data) and fast.fast.decode(r.data) is not None)
    assert taken > 0.5 * len(plan.records)


@pytest.mark.parametrize("change", [
    {"price": "120.50"},            # needs coercion: only the generic path coerces
    {"price": 120},                 # an integer for a number: both give 120.0
    {"colour": "red"},              # undeclared: the generic path rejects it
    {"item_id": "bad id"},          # pattern: rejected with the generic path's message
])
def test_fast_path_defers_to_the_generic_path(both, change):
    event = {"type": "Lead", "messageId": "m-1", "timestamp": "2026-11-26T11:00:00.000Z", "userId": "u-1",
             "properties": {"item_id": "it-1", "seller_id": "u-2", "category": "bikes", "channel": "chat", **change}}
    records = [record(orjson.dumps(event), "1", NOW.timestamp())]
    fast, generic = both
    assert outcome(fast, records) == outcome(generic, records)
