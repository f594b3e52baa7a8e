"""Lambda entry point of the search indexer: its own event source mapping on the event stream.

Thin: the tracking core validates the batch (only valid events are indexed; rejections are the main
consumer's business), :class:`handlers.search.indexer.Indexer` applies the listing events, and listings
the engine refused come back as ``batchItemFailures``. An engine that cannot be reached is an outage: it is
waited out within the invocation's time, then the whole batch comes back in ``batchItemFailures`` (no
bisecting; the mapping retries it until the engine is back or the records' maximum age runs out).
"""
from __future__ import annotations

from typing import Any

from handlers.core.alerts import OutageReporter
from handlers.core.config import Env
from handlers.core.failures import Unavailable, wait_out
from handlers.core.kinesis import batch_item_failures, records_from_event
from handlers.core.runtime import ColdStart, wait_budget
from handlers.search import open_backend
from handlers.search.indexer import IndexOutcome, Indexer
from handlers.search.listings import DEFAULT_RETENTION_DAYS
from handlers.tracking.consumer import processor_from_env
from handlers.tracking.processor import Processor

_outages = OutageReporter("search-indexer")


class IndexerHandler:
    def __init__(self, processor: Processor, indexer: Indexer) -> None:
        self.processor, self.indexer = processor, indexer

    def process(self, event: dict[str, Any], *, budget_seconds: float = 0.0) -> IndexOutcome:
        """Everything but the response shape (the local stage's driver calls this; it does its own waiting)."""
        records = records_from_event(event)
        events = self.processor.process(records).events
        try:
            outcome = wait_out(lambda: self.indexer.apply(events), budget_seconds=budget_seconds,
                               on_wait=lambda problem, _delay, _retry: _outages.waiting(problem))
        except Unavailable as exc:  # the whole batch waits: handed back, never bisected or skipped
            outcome = IndexOutcome(failed_sequence_numbers={r.sequence_number for r in records},
                                   unavailable=exc.dependency, error=str(exc))
            _outages.waiting(exc)
            return outcome
        _outages.recovered()
        return outcome

    def handle(self, event: dict[str, Any], budget_seconds: float = 0.0) -> dict[str, Any]:
        return batch_item_failures(self.process(event, budget_seconds=budget_seconds).failed_sequence_numbers)


def build_handler(env: Env | None = None) -> IndexerHandler:
    env = env or Env()
    backend = open_backend(env)  # LETGO_SEARCH_BACKEND, LETGO_OPENSEARCH_URL (+ region: SigV4) on AWS
    if env.flag("LETGO_SEARCH_SETUP", True):  # on AWS `letgo search setup` made them (handlers/search/access.py)
        backend.setup()  # idempotent: templates and aliases exist before the first write
    # Tombstones must outlive every late or replayed event: the stream's retention plus the archive replays.
    retention = env.number("LETGO_SEARCH_TOMBSTONE_DAYS", DEFAULT_RETENTION_DAYS, minimum=1)
    return IndexerHandler(processor_from_env(env), Indexer(backend, retention_days=retention))


_app = ColdStart("search-indexer", build_handler)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _app.get().handle(event, wait_budget(context))
