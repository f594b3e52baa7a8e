"""Lambda entry point of the search indexer: its own event source mapping on the event stream.

Thin: the tracking core validates the batch (only valid events are indexed; rejections are the main
consumer's business), :class:`handlers.search.indexer.Indexer` applies the listing events, and listings
the engine refused come back as ``batchItemFailures``. An engine that cannot be reached is an outage: it is
waited out within the invocation's time, then the whole batch comes back in ``batchItemFailures`` (no
bisecting; the mapping retries it until the engine is back or the records' maximum age runs out).
"""
from __future__ import annotations

import os
from typing import Any

from handlers.core.alerts import OutageReporter
from handlers.core.failures import Unavailable, wait_out
from handlers.search import open_backend
from handlers.search.indexer import IndexOutcome, Indexer
from handlers.tracking.core import Processor
from handlers.tracking.event_types import load_catalog
from handlers.tracking.lambda_consumer import records_from_event
from handlers.tracking.settings import PACKAGE_ROOT, load_settings


SAFETY_MARGIN_SECONDS = 15.0
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
        outcome = self.process(event, budget_seconds=budget_seconds)
        return {"batchItemFailures": [{"itemIdentifier": seq}
                                      for seq in sorted(outcome.failed_sequence_numbers, key=int)]}


def build_handler(env: dict[str, str] | None = None) -> IndexerHandler:
    env = dict(os.environ if env is None else env)
    settings = load_settings()
    catalog = load_catalog(PACKAGE_ROOT / "event_types", max_depth=settings.max_depth)
    backend = open_backend(env)  # LETGO_OPENSEARCH_URL (+ region: SigV4) on AWS
    if env.get("LETGO_SEARCH_SETUP", "1") != "0":  # on AWS `letgo search setup` made them (handlers/search/access.py)
        backend.setup()  # idempotent: templates and aliases exist before the first write
    return IndexerHandler(Processor(catalog, settings), Indexer(backend))


_handler: IndexerHandler | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _handler
    if _handler is None:
        from handlers.core.alerts import init_sentry

        init_sentry(os.environ.get("STAGE", "local"))  # failed batches reach Sentry (DSN: SENTRY_DSN_SECRET_ARN)
        _handler = build_handler()
    return _handler.handle(event, max(0.0, context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS))
