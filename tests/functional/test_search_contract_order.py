"""The search contract, writes: listing events in any order give the index that event-time order gives.

A listing's events do not share a shard (the seller's ItemListed, a moderator's ItemDeleted, a gzipped body keyed
by its request id), so the indexer sees them in any order, cut into any batches, some of them twice. The property:
generated listing histories — listed, updated (price, title, language: a move to another index), sold, deleted,
listed again — delivered in a random order, split into random batches with random replays, leave exactly the ads
that applying the events one by one in version order leaves (``event_time_fold``, brute force, independent of
the indexer), both as fetched and as searched. On every engine of the contract suite.
"""
from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.search import SearchBackend, SearchRequest
from handlers.search.indexer import Indexer
from handlers.search.opensearch_backend import OpenSearchBackend
from tests.search_contract_kit import Engine, engine_fixture, fresh_fixture, osmem_endpoint_fixture  # noqa: F401
from tests.search_kit import StreamEvent, event_time_fold, iso_ms, listed_properties

pytestmark = pytest.mark.functional

BASE_MS = 1_795_000_000_000
_examples = itertools.count()


def letters(n: int) -> str:
    """A word of letters only, unique per example (digits would be split off by some tokenizers)."""
    word = ""
    while True:
        n, rest = divmod(n, 26)
        word += "abcdefghijklmnopqrstuvwxyz"[rest]
        if not n:
            return f"qz{word}w"


@st.composite
def histories(draw: st.DrawFn, tag: str) -> list[StreamEvent]:
    """Events of 1-4 listings: each a random sequence of listed / updated / sold / deleted at random times (ties
    included: the messageId decides)."""
    events: list[StreamEvent] = []
    for n in range(draw(st.integers(1, 4))):
        item = f"{tag}-{n}"
        for k in range(draw(st.integers(1, 6))):
            kind = draw(st.sampled_from(["ItemListed", "ItemListed", "ItemUpdated", "ItemUpdated", "ItemSold",
                                         "ItemDeleted"]))
            at = iso_ms(BASE_MS + draw(st.integers(0, 40)))
            message_id = f"m-{item}-{k}"
            if kind == "ItemListed":
                language = draw(st.sampled_from(["es", "es", "en"]))  # osmem cannot search nl
                properties = listed_properties(item, f"Bicicleta {tag} v{k}", float(draw(st.integers(1, 999))),
                                               language)
            elif kind == "ItemUpdated":
                properties = {"item_id": item, "seller_id": "u-1"}
                change = draw(st.sampled_from(["price", "title", "move"]))
                if change == "price":
                    properties["price"] = float(draw(st.integers(1, 999)))
                elif change == "title":
                    properties["title"] = f"Fiets {tag} u{k}"
                else:
                    properties.update(language="en", country="GB") if draw(st.booleans()) else \
                        properties.update(language="es", country="ES")
            else:
                properties = {"item_id": item, "seller_id": "u-1", "category": "bikes", "reason": "other"}
            events.append(StreamEvent(kind, at, message_id, properties, message_id))
    return events


@st.composite
def deliveries(draw: st.DrawFn, events: list[StreamEvent]) -> list[list[StreamEvent]]:
    """The events in a random order, cut into random batches, some batches delivered twice (Lambda retries)."""
    order = draw(st.permutations(events))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=6)))
    batches = [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, len(order)]) if order[a:b]]
    replays = draw(st.lists(st.integers(0, len(batches) - 1), max_size=3))
    for position in sorted(replays, reverse=True):
        batches.insert(position + 1, batches[position])
    return batches


def assert_index_is(backend: SearchBackend, tag: str, events: list[StreamEvent]) -> None:
    expected = event_time_fold(events)
    items = sorted({e.properties["item_id"] for e in events})
    assert backend.fetch(items) == expected
    backend.refresh()
    for language in ("es", "en"):
        found = backend.search(SearchRequest(language, text=tag, fuzzy=False, page_size=50))
        assert sorted(h.ad.item_id for h in found.hits) == sorted(
            item for item, ad in expected.items() if ad.language == language)


@pytest.fixture(scope="module", name="shared")
def shared_fixture(engine: Engine):
    """One backend per engine for every example (each example uses its own listing ids and title word)."""
    backend = engine.make()
    yield backend
    engine.dispose(backend)


@given(data=st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
def test_any_delivery_order_gives_the_event_time_index(shared: SearchBackend, data: st.DataObject) -> None:
    tag = letters(next(_examples))
    events = data.draw(histories(tag))
    indexer = Indexer(shared)

    for batch in data.draw(deliveries(events)):
        outcome = indexer.apply(batch)
        assert not outcome.failed_sequence_numbers

    assert_index_is(shared, tag, events)


def test_a_delete_before_a_late_listing_keeps_the_ad_out(fresh: SearchBackend) -> None:
    listed = StreamEvent("ItemListed", iso_ms(BASE_MS), "m1", listed_properties("late-1", "Bicicleta tarde", 100.0))
    deleted = StreamEvent("ItemDeleted", iso_ms(BASE_MS + 5000), "m2",
                          {"item_id": "late-1", "seller_id": "mod-7", "reason": "moderation"})
    updated = StreamEvent("ItemUpdated", iso_ms(BASE_MS + 1000), "m3", {"item_id": "late-1", "price": 5.0})
    indexer = Indexer(fresh)

    indexer.apply([deleted])
    indexer.apply([updated, listed])  # both older than the delete: neither may revive it

    assert fresh.fetch(["late-1"]) == {}
    state = fresh.states(["late-1"])["late-1"]
    assert not state.live and state.gone is not None  # the tombstone that kept it out
    relisted = StreamEvent("ItemListed", iso_ms(BASE_MS + 9000), "m4", listed_properties("late-1", "Bici", 90.0))
    indexer.apply([relisted])  # a newer listing does come back
    assert fresh.fetch(["late-1"])["late-1"].price == 90.0


def test_an_update_before_its_listing_is_kept_and_merged(fresh: SearchBackend) -> None:
    updated = StreamEvent("ItemUpdated", iso_ms(BASE_MS + 1000), "m2", {"item_id": "early-1", "price": 75.0})
    listed = StreamEvent("ItemListed", iso_ms(BASE_MS), "m1", listed_properties("early-1", "Bicicleta", 100.0))
    indexer = Indexer(fresh)

    indexer.apply([updated])
    assert fresh.fetch(["early-1"]) == {}  # a partial state is not searchable
    indexer.apply([listed])

    assert fresh.fetch(["early-1"])["early-1"].price == 75.0


def test_tombstones_are_purged_after_the_retention_only(fresh: SearchBackend) -> None:
    sold = StreamEvent("ItemSold", iso_ms(BASE_MS), "m1", {"item_id": "old-1", "category": "bikes"})
    recent = StreamEvent("ItemSold", iso_ms(BASE_MS + 86_400_000), "m2", {"item_id": "new-1", "category": "bikes"})
    listed = StreamEvent("ItemListed", iso_ms(BASE_MS), "m3", listed_properties("alive-1", "Bicicleta", 10.0))
    Indexer(fresh).apply([sold, recent, listed])

    purged = fresh.purge(before=(BASE_MS + 3_600_000) / 1000)

    assert purged == 1
    assert set(fresh.states(["old-1", "new-1", "alive-1"])) == {"new-1", "alive-1"}


def test_concurrent_indexers_on_different_shards_agree(engine: Engine, fresh: SearchBackend) -> None:
    """Two shards' indexers at once (OpenSearch: two clients racing on the same listings; their optimistic
    concurrency must re-read and merge, never overwrite each other)."""
    events = [event for n in range(30) for event in (
        StreamEvent("ItemListed", iso_ms(BASE_MS + n), f"l{n}", listed_properties(f"race-{n}", "Bicicleta race", n)),
        StreamEvent("ItemUpdated", iso_ms(BASE_MS + 100 + n), f"u{n}", {"item_id": f"race-{n}", "price": 1000.0 + n}),
        StreamEvent("ItemDeleted", iso_ms(BASE_MS + 200 + n), f"d{n}", {"item_id": f"race-{n}", "reason": "other"})
        if n % 3 == 0 else StreamEvent("ItemUpdated", iso_ms(BASE_MS + 300 + n), f"t{n}",
                                       {"item_id": f"race-{n}", "title": f"Fiets race {n}"}))]
    shards = [events[0::2], events[1::2]]
    backends = [fresh] + [OpenSearchBackend(fresh.config, client=None) if isinstance(fresh, OpenSearchBackend)
                          else fresh]
    errors: list[BaseException] = []

    def run(backend: SearchBackend, shard: list[StreamEvent]) -> None:
        try:
            indexer = Indexer(backend)
            for start in range(0, len(shard), 3):
                assert not indexer.apply(shard[start:start + 3]).failed_sequence_numbers
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b, s)) for b, s in zip(backends, shards)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert fresh.fetch([f"race-{n}" for n in range(30)]) == event_time_fold(events)
