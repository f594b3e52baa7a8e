"""The stream indexer over real events: generated marketplace traffic -> the tracking core -> a real tantivy index.

Properties rather than hand-written expectations: the index holds exactly the listings that were listed and
not sold or deleted, each with its last price; how the stream is cut into batches, replaying batches (Lambda
retries) and shuffling the events across shards change nothing. (The contract suite's
``test_search_contract_order.py`` holds every engine to the same with generated histories.)
"""
from __future__ import annotations

import base64
import random
import time
from datetime import datetime, timezone

import pytest

from handlers.search.indexer import Indexer, changes_of
from handlers.search.model import SearchRequest
from handlers.search.tantivy_backend import TantivyBackend
from handlers.core.kinesis import RawRecord
from letgo.traffic import generate

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def events(processor):
    """Valid events of 6,000 generated units, in stream order (malformed ones are the consumer's business)."""
    now = datetime.now(timezone.utc)
    plan = generate(6000, seed=11, now=now, malformed_share=0.0)
    records = [RawRecord(str(i), r.partition_key, base64.b64encode(r.data).decode(), time.time(), "shard-0")
               for i, r in enumerate(plan.records)]
    return [e for i in range(0, len(records), 500) for e in processor.process(records[i:i + 500]).events]


def expected_state(events):
    """Brute force, independent of the indexer: listed items minus removed ones, with each item's last price,
    applying the events in event-time order (the generator's stream order is its event-time order)."""
    alive, price = set(), {}
    for e in sorted(events, key=lambda e: (e.timestamp, e.message_id)):
        item = e.properties.get("item_id")
        if e.type == "ItemListed":
            alive.add(item)
            price[item] = e.properties["price"]
        elif e.type == "ItemUpdated" and item in alive and "price" in e.properties:
            price[item] = e.properties["price"]
        elif e.type in ("ItemSold", "ItemDeleted"):
            alive.discard(item)
    return {item: price[item] for item in alive}


def indexed(backend, item_ids):
    return {item: ad.price for item, ad in backend.fetch(item_ids).items()}


def test_index_holds_exactly_the_live_listings_with_their_last_price(events):
    listing_ids = sorted({e.properties["item_id"] for e in events if e.type.startswith("Item")
                          and e.type != "ItemViewed"})
    expected = expected_state(events)
    assert 0 < len(expected) < len(listing_ids)  # the traffic does sell and delete listings
    with TantivyBackend() as backend:
        outcome = Indexer(backend).apply(events)
        backend.refresh()
        assert indexed(backend, listing_ids) == expected
        assert outcome.failed_sequence_numbers == set()


@pytest.mark.parametrize("batch", [1, 7, 250])
def test_batching_and_replayed_batches_do_not_change_the_index(events, batch):
    listing_ids = sorted({e.properties["item_id"] for e in events if "item_id" in e.properties})
    with TantivyBackend() as one_go, TantivyBackend() as batched:
        Indexer(one_go).apply(events)
        indexer = Indexer(batched)
        for i in range(0, len(events), batch):
            chunk = events[i:i + batch]
            indexer.apply(chunk)
            if i % (3 * batch) == 0:
                indexer.apply(chunk)  # a Lambda retry of the same batch
        one_go.refresh(), batched.refresh()
        assert indexed(batched, listing_ids) == indexed(one_go, listing_ids) == expected_state(events)
        request = SearchRequest(language="es", text="bicicleta")
        assert [h.ad.item_id for h in batched.search(request).hits] == \
            [h.ad.item_id for h in one_go.search(request).hits]


def test_shuffled_across_shards_the_stream_gives_the_same_index(events):
    """A listing's events on different shards arrive in any order: shuffled into 4 "shards" read in turns."""
    listing_ids = sorted({e.properties["item_id"] for e in events if "item_id" in e.properties})
    shuffled = list(events)
    random.Random(5).shuffle(shuffled)
    shards = [shuffled[i::4] for i in range(4)]
    with TantivyBackend() as backend:
        indexer = Indexer(backend)
        for start in range(0, max(len(s) for s in shards), 50):
            for shard in shards:
                indexer.apply(shard[start:start + 50])
        backend.refresh()
        assert indexed(backend, listing_ids) == expected_state(events)


class _Event:
    def __init__(self, type_, item, seq, **properties):
        self.type, self.sequence_number, self.message_id = type_, seq, f"m-{seq}"
        self.properties = {"item_id": item, **properties}
        self.timestamp = "2026-11-26T10:00:00Z"


def test_a_listing_that_cannot_be_an_ad_is_skipped_with_its_reason():
    skipped = []
    changes = changes_of([_Event("ItemListed", "no-title", "9", price=5), _Event("ItemSold", "a", "10")], skipped)
    assert [c.item_id for c in changes] == ["a"]
    assert skipped == [("m-9", "ad no-title: title: is required")]


def test_reindex_from_the_processed_events_rebuilds_what_the_stream_indexer_built(stage, tmp_path, capsys):
    """The backfill path (letgo search reindex): the warehouse's copy of the events gives the same index."""
    from letgo import cli
    from tests.stage_kit import send

    plan = generate(3000, seed=12, now=datetime.now(timezone.utc), malformed_share=0.0)
    send(stage, [r.data for r in plan.records])
    stage.mapping.drain()
    target = tmp_path / "rebuilt"
    assert cli.main(["search", "reindex", "--bucket", stage.names.processed_bucket, "--path", str(target)]) == 0
    assert "reindexed" in capsys.readouterr().out

    from letgo.search_local import processed_listing_events

    events = processed_listing_events(stage_client("s3"), stage.names.processed_bucket)
    ids = sorted({e.properties["item_id"] for e in events})
    with TantivyBackend() as from_stream, TantivyBackend(target) as rebuilt:
        indexer = Indexer(from_stream)
        for i in range(0, len(events), 100):
            indexer.apply(events[i:i + 100])
        from_stream.refresh()
        assert ids and indexed(rebuilt, ids) == indexed(from_stream, ids) == expected_state(events)


def stage_client(service):
    from handlers.core.aws import client

    return client(service)
