"""The stream indexer over real events: generated marketplace traffic -> the tracking core -> a real tantivy index.

Properties rather than hand-written expectations: the index holds exactly the listings that were listed and
not sold or deleted, each with its last price; how the stream is cut into batches (fetching the indexed
version for updates in later batches) and replaying batches (Lambda retries) change nothing.
"""
from __future__ import annotations

import base64
import time
from datetime import datetime, timezone

import pytest

from handlers.search.indexer import Indexer, fold, needs_fetch
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
    """Brute force, independent of the indexer: listed items minus removed ones, with each item's last price."""
    alive, price = set(), {}
    for e in events:
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


class _Event:
    def __init__(self, type_, item, seq, **properties):
        self.type, self.sequence_number, self.message_id = type_, seq, f"m-{seq}"
        self.properties = {"item_id": item, **properties}
        self.timestamp = "2026-11-26T10:00:00Z"


def test_updates_fetch_only_listings_not_listed_earlier_in_the_batch():
    batch = [_Event("ItemUpdated", "a", "1", price=5), _Event("ItemListed", "b", "2"),
             _Event("ItemUpdated", "b", "3", price=6), _Event("ItemUpdated", "a", "4", price=7)]
    assert needs_fetch(batch) == ["a"]


def test_an_update_for_a_listing_never_indexed_is_skipped_with_its_reason():
    state, skipped, _ = fold([_Event("ItemUpdated", "ghost", "9", price=5)], known={})
    assert state == {} and skipped == [("m-9", "ItemUpdated for ghost: never indexed (reindex to recover)")]


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
