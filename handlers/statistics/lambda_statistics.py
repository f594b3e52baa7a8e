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

from datetime import datetime
from typing import Any, Mapping

from handlers.core.alerts import OutageReporter
from handlers.core.config import PACKAGE_ROOT, ConfigError, Env
from handlers.core.failures import wait_out
from handlers.core.kinesis import records_from_event
from handlers.core.runtime import ColdStart, wait_budget
from handlers.core.secrets import database_dsn
from handlers.statistics.aggregate import WindowAggregator
from handlers.statistics.definitions import MetricSet, load_metrics
from handlers.statistics.sink import MetricSink
from handlers.tracking.consumer import processor_from_env
from handlers.tracking.processor import Processor

_outages = OutageReporter("statistics")


class StatisticsHandler:
    def __init__(self, processor: Processor, metrics: MetricSet, sink: MetricSink) -> None:
        self.processor, self.metrics, self.sink = processor, metrics, sink
        self.aggregator = WindowAggregator(metrics)
        self.windows = {m.key: m.window_seconds for m in metrics.metrics}

    def close(self) -> None:
        self.sink.close()

    def handle(self, event: dict[str, Any], budget_seconds: float = 0.0) -> dict[str, Any]:
        """One tumbling-window invoke; ``budget_seconds``: how long a final write may wait out an outage."""
        state = event.get("state") or {}
        records = records_from_event(event) if event.get("Records") else []
        if records:
            state = self.aggregator.add(state, self.processor.process(records).events)
        if not event.get("isFinalInvokeForWindow"):
            return {"state": state, "batchItemFailures": []}
        start = datetime.fromisoformat(event["window"]["start"].replace("Z", "+00:00"))
        rows = self.aggregator.rows(state)
        wait_out(lambda: self.sink.write_window(rows, self.windows, start, event.get("shardId", "unknown")),
                 budget_seconds=budget_seconds, on_wait=lambda problem, _delay, _retry: _outages.waiting(problem))
        _outages.recovered()
        return {"state": {}, "batchItemFailures": []}


def build_handler(env: Env | Mapping[str, str] | None = None) -> StatisticsHandler:
    env = env if isinstance(env, Env) else Env(env)
    processor = processor_from_env(env)
    metrics = load_metrics(env.path("METRICS_DIR", PACKAGE_ROOT / "metrics"), processor.catalog)
    dsn = database_dsn(env)
    if not dsn:
        raise ConfigError("DATABASE_URL", "is not set, nor DATABASE_IAM_USER or DATABASE_SECRET_ARN (the metrics "
                                          "database)")
    return StatisticsHandler(processor, metrics, MetricSink(dsn))


_app = ColdStart("statistics", build_handler)
reset = _app.reset


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _app.get().handle(event, budget_seconds=wait_budget(context))
