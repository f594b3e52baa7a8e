"""Lambda entry point for the statistics event source mapping (Kinesis, ``TumblingWindowInSeconds``).

Kinesis Data Analytics for SQL, the original design's choice, was shut down by AWS in January 2026; Lambda
tumbling windows replace it (Managed Flink would too, at the cost of a cluster to run — see the README).
Each invocation carries the window's ``state`` from the previous one: we validate the batch with the very
same tracking core (only valid events count), fold it into the state, and return it. The final invocation
of a window (``isFinalInvokeForWindow``) writes the rows — one transaction replacing that window and shard —
and returns an empty state.

A database outage during that write is waited out inside the invocation (capped backoff, within the function's
remaining time), then the invocation fails: the statistics mapping does not bisect, and retries the window
until it is written or its records reach the mapping's maximum age (then ``letgo recover`` recomputes it).
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from handlers.core.alerts import OutageReporter
from handlers.core.failures import wait_out
from handlers.statistics.aggregate import WindowAggregator
from handlers.statistics.definitions import MetricSet, load_metrics
from handlers.statistics.sink import MetricSink
from handlers.tracking.consumer import database_url_from_secret
from handlers.tracking.core import Processor
from handlers.tracking.event_types import load_catalog
from handlers.tracking.lambda_consumer import records_from_event
from handlers.tracking.settings import PACKAGE_ROOT, load_settings


SAFETY_MARGIN_SECONDS = 15.0
_outages = OutageReporter("statistics")


class StatisticsHandler:
    def __init__(self, processor: Processor, metrics: MetricSet, sink: MetricSink) -> None:
        self.processor, self.metrics, self.sink = processor, metrics, sink
        self.aggregator = WindowAggregator(metrics)
        self.windows = {m.key: m.window_seconds for m in metrics.metrics}
        self.wait_budget_seconds = 0.0  # set per invocation from the Lambda context; 0: fail at once (local)

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        state = event.get("state") or {}
        records = records_from_event(event) if event.get("Records") else []
        if records:
            state = self.aggregator.add(state, self.processor.process(records).events)
        if not event.get("isFinalInvokeForWindow"):
            return {"state": state, "batchItemFailures": []}
        start = datetime.fromisoformat(event["window"]["start"].replace("Z", "+00:00"))
        rows = self.aggregator.rows(state)
        wait_out(lambda: self.sink.write_window(rows, self.windows, start, event.get("shardId", "unknown")),
                 budget_seconds=self.wait_budget_seconds, on_wait=lambda problem, _delay, _retry: _outages.waiting(problem))
        _outages.recovered()
        return {"state": {}, "batchItemFailures": []}


def build_handler(env: dict[str, str] | None = None) -> StatisticsHandler:
    env = dict(os.environ if env is None else env)
    settings = load_settings(Path(env["TRACKING_CONFIG"]) if env.get("TRACKING_CONFIG") else None)
    catalog = load_catalog(Path(env.get("EVENT_TYPES_DIR") or PACKAGE_ROOT / "event_types"),
                           max_depth=settings.max_depth)
    metrics = load_metrics(Path(env.get("METRICS_DIR") or PACKAGE_ROOT / "metrics"), catalog)
    dsn = env.get("DATABASE_URL") or database_url_from_secret(env.get("DATABASE_SECRET_ARN"), env)
    if not dsn:
        raise RuntimeError("statistics misconfigured: set DATABASE_URL or DATABASE_SECRET_ARN")
    return StatisticsHandler(Processor(catalog, settings), metrics, MetricSink(dsn))


_handler: StatisticsHandler | None = None


def reset() -> None:
    global _handler
    if _handler is not None:
        _handler.sink.close()
    _handler = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _handler
    if _handler is None:
        from handlers.core.alerts import init_sentry

        init_sentry(os.environ.get("STAGE", "local"))  # outages reach Sentry (DSN: SENTRY_DSN_SECRET_ARN)
        _handler = build_handler()
    _handler.wait_budget_seconds = max(0.0, context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS)
    return _handler.handle(event)
