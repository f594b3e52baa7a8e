"""The stream indexer: listing events in, the search index kept in step — in bulk, idempotent, in order.

It is a second consumer of the event stream (its own Lambda event source mapping, like the statistics), and
runs the same tracking core first, so only *valid* events reach the index. Per batch:

1. fold the listing events, in stream order, into one final state per listing: ``ItemListed`` → the ad,
   ``ItemUpdated`` → the ad with the changed fields (only those are sent), ``ItemSold`` / ``ItemDeleted`` →
   gone. A listing touched ten times in a batch costs one write.
2. an update to a listing not listed earlier in the batch needs the indexed version: they are fetched in one
   call before folding. An update to a listing the index never saw (its ``ItemListed`` was invalid, or came
   before the index existed — run ``letgo search reindex``) is skipped and counted, never guessed.
3. one bulk upsert and one bulk delete. Replaying a batch gives the same index (writes are by ``item_id``,
   events apply in the stream's order — a listing's events share the seller's partition key, so they sit on
   one shard, in order).

Failures: a listing the engine refuses (:class:`~handlers.search.errors.IndexingFailed`) fails the records
that carried its events (``batchItemFailures``: Lambda retries from the first of them, re-applying is
harmless); an unreachable engine fails the whole batch. A listing event that cannot become an ad
(:class:`~handlers.search.errors.InvalidAd`) is skipped with its reason — the event itself is already in
the warehouse, and a reindex from there picks it up once fixed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from handlers.search.backend import SearchBackend
from handlers.search.errors import IndexingFailed, InvalidAd
from handlers.search.model import Ad

LOG = logging.getLogger(__name__)
LISTED, UPDATED, SOLD, DELETED = "ItemListed", "ItemUpdated", "ItemSold", "ItemDeleted"
LISTING_TYPES = frozenset({LISTED, UPDATED, SOLD, DELETED})
GONE = None  # a listing's final state when sold or deleted


@dataclass
class IndexOutcome:
    events: int = 0                                   # listing events seen
    indexed: int = 0                                  # ads written (after folding)
    removed: int = 0                                  # ads deleted (after folding)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (message id, why)
    failed_sequence_numbers: set[str] = field(default_factory=set)
    unavailable: str | None = None  # the engine is down: the whole batch was handed back to wait (an outage)
    error: str | None = None

    def merge(self, other: "IndexOutcome") -> None:
        self.events += other.events
        self.indexed += other.indexed
        self.removed += other.removed
        self.skipped += other.skipped
        self.failed_sequence_numbers |= other.failed_sequence_numbers


def listing_events(events: Iterable[Any]) -> list[Any]:
    return [e for e in events if e.type in LISTING_TYPES]


def fold(events: Sequence[Any], known: dict[str, Ad]) -> tuple[dict[str, Ad | None], list[tuple[str, str]],
                                                               dict[str, list[str]]]:
    """Final state per listing (an Ad, or GONE), the skipped events, and the sequence numbers per listing."""
    state: dict[str, Ad | None] = {}
    skipped: list[tuple[str, str]] = []
    sequences: dict[str, list[str]] = {}
    for event in events:
        properties = event.properties
        item_id = properties.get("item_id")
        sequences.setdefault(item_id, []).append(event.sequence_number)
        try:
            if event.type == LISTED:
                state[item_id] = Ad.from_item_listed(properties, event.timestamp)
            elif event.type == UPDATED:
                current = state[item_id] if item_id in state else known.get(item_id)
                if current is None:
                    why = "sold or deleted earlier" if item_id in state else "never indexed (reindex to recover)"
                    skipped.append((event.message_id, f"ItemUpdated for {item_id}: {why}"))
                    continue
                state[item_id] = current.updated(properties)
            else:  # sold or deleted: out of search
                state[item_id] = GONE
        except InvalidAd as exc:
            skipped.append((event.message_id, str(exc)))
    return state, skipped, sequences


def needs_fetch(events: Sequence[Any]) -> list[str]:
    """Listings updated in this batch without being listed before the update in the same batch."""
    listed: set[str] = set()
    wanted: list[str] = []
    for event in events:
        item_id = event.properties.get("item_id")
        if event.type == LISTED:
            listed.add(item_id)
        elif event.type == UPDATED and item_id not in listed and item_id not in wanted:
            wanted.append(item_id)
    return wanted


class Indexer:
    def __init__(self, backend: SearchBackend) -> None:
        self.backend = backend

    def apply(self, events: Sequence[Any]) -> IndexOutcome:
        """Apply a batch's valid events (any types; non-listing ones are ignored) to the index."""
        events = listing_events(events)
        outcome = IndexOutcome(events=len(events))
        if not events:
            return outcome
        wanted = needs_fetch(events)
        known = self.backend.fetch(wanted) if wanted else {}
        state, outcome.skipped, sequences = fold(events, known)
        upserts = [ad for ad in state.values() if ad is not None]
        removals = [item_id for item_id, ad in state.items() if ad is None]
        try:
            outcome.indexed = self.backend.index(upserts)
        except IndexingFailed as exc:
            outcome.indexed = exc.indexed
            for item_id, _why in exc.failures:
                outcome.failed_sequence_numbers.update(sequences.get(item_id, []))
            LOG.warning("search indexer: %s", exc)
        if removals:
            self.backend.remove(removals)
            outcome.removed = len(removals)
        for message_id, why in outcome.skipped:
            LOG.info("search indexer skipped %s: %s", message_id, why)
        return outcome
