"""The stream indexer: listing events in, the search index kept in step — in bulk, idempotent, in any order.

It is a second consumer of the event stream (its own Lambda event source mapping, like the statistics), and
runs the same tracking core first, so only *valid* events reach the index. Per batch:

1. every listing event becomes a :class:`~handlers.search.listings.Change` carrying its version (timestamp,
   then messageId); an ``ItemListed`` that cannot become an ad is skipped with its reason — the event itself
   is in the warehouse;
2. ``backend.apply`` merges the batch's changes into each listing's stored state and writes the search
   document that state gives (:mod:`handlers.search.listings`). Arrival order carries no meaning: a
   listing's events do not share a shard (a moderator's delete is keyed by the moderator, a gzipped body by
   the request id), so a delete may come before a late ``ItemListed`` and an update before its listing.
   Replaying a batch, cutting the stream into other batches or reading it from the archive weeks later
   gives the same index, and ``letgo search reindex`` (every event at once) gives it too, by construction.
3. once an hour (and at a cold start), tombstones and partial states older than the retention are purged.

Failures: a listing the engine refuses fails the records that carried its events (``batchItemFailures``:
Lambda retries from the first of them; re-applying is harmless); an unreachable engine fails the whole batch
(the Lambda entry point waits it out first).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from handlers.search.backend import SearchBackend
from handlers.search.errors import InvalidAd, SearchError
from handlers.search.listings import DEFAULT_RETENTION_DAYS, LISTING_TYPES, Change

LOG = logging.getLogger(__name__)
PURGE_EVERY_S = 3600.0

__all__ = ["IndexOutcome", "Indexer", "LISTING_TYPES", "changes_of", "listing_events"]


@dataclass
class IndexOutcome:
    events: int = 0                                   # listing events seen
    indexed: int = 0                                  # listings searchable after the batch
    removed: int = 0                                  # listings not searchable after it (sold, deleted, early update)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (message or item id, why)
    failed_sequence_numbers: set[str] = field(default_factory=set)
    purged: int = 0                                   # expired tombstones and partial states forgotten
    unavailable: str | None = None  # the engine is down: the whole batch was handed back to wait (an outage)
    error: str | None = None

    def merge(self, other: "IndexOutcome") -> None:
        self.events += other.events
        self.indexed += other.indexed
        self.removed += other.removed
        self.skipped += other.skipped
        self.failed_sequence_numbers |= other.failed_sequence_numbers
        self.purged += other.purged


def listing_events(events: Iterable[Any]) -> list[Any]:
    return [e for e in events if e.type in LISTING_TYPES]


def changes_of(events: Iterable[Any], skipped: list[tuple[str, str]] | None = None) -> list[Change]:
    """The changes of these (listing) events; events that cannot be one are added to ``skipped`` with why."""
    changes = []
    for event in events:
        try:
            changes.append(Change.from_event(event))
        except (InvalidAd, ValueError, TypeError, AttributeError) as exc:
            if skipped is not None:
                skipped.append((event.message_id, str(exc)))
    return changes


class Indexer:
    def __init__(self, backend: SearchBackend, *, retention_days: float = DEFAULT_RETENTION_DAYS,
                 purge_every_s: float = PURGE_EVERY_S, clock: Callable[[], float] = time.time) -> None:
        if not retention_days > 0:
            raise ValueError(f"retention_days {retention_days!r}: must be > 0")
        self.backend = backend
        self.retention_s = retention_days * 86400.0
        self.purge_every_s = purge_every_s
        self.clock = clock
        self._last_purge: float | None = None

    def apply(self, events: Sequence[Any]) -> IndexOutcome:
        """Apply a batch's valid events (any types; non-listing ones are ignored) to the index."""
        events = listing_events(events)
        outcome = IndexOutcome(events=len(events))
        if events:
            sequences: dict[str, list[str]] = {}
            for event in events:
                sequences.setdefault(event.properties.get("item_id"), []).append(event.sequence_number)
            result = self.backend.apply(changes_of(events, outcome.skipped))
            outcome.indexed, outcome.removed = result.searchable, result.hidden
            outcome.skipped += result.invalid
            for item_id, why in result.failures:
                outcome.failed_sequence_numbers.update(sequences.get(item_id, []))
                LOG.warning("search indexer: %s refused: %s", item_id, why)
            for what, why in outcome.skipped:
                LOG.info("search indexer skipped %s: %s", what, why)
        outcome.purged = self.purge_if_due()
        return outcome

    def purge_if_due(self) -> int:
        """Forget expired tombstones and partial states, at most once per ``purge_every_s``."""
        now = self.clock()
        if self._last_purge is not None and now - self._last_purge < self.purge_every_s:
            return 0
        self._last_purge = now
        try:
            return self.backend.purge(now - self.retention_s)
        except SearchError as exc:  # the batch is applied; the purge is tried again next time
            LOG.warning("search indexer: purge failed: %s", exc)
            self._last_purge = None
            return 0
