"""Benchmark 3: windowed aggregation (every shipped metric) vs the event core's floor, on the same records.

The candidate is what the statistics Lambda adds on top of validation: folding a batch's events into the
window state, with the state round-tripping through JSON between invocations as Lambda passes it.
"""
from __future__ import annotations

import binascii
from typing import Any

import orjson

from bench.timing import alternate
from bench.workloads import Workload
from handlers.statistics.aggregate import WindowAggregator
from handlers.statistics.definitions import load_metrics
from handlers.tracking.processor import Processor
from letgo import REPO_ROOT

BATCH = 500


def run(workload: Workload, processor: Processor, rounds: int) -> dict[str, Any]:
    records = workload.records
    batches = [records[i:i + BATCH] for i in range(0, len(records), BATCH)]
    events = [processor.process(batch).events for batch in batches]
    for batch in events:
        for event in batch:  # readers see dicts; convert once, outside the timing (the core's own cost)
            event.properties, event.context  # noqa: B018
    aggregator = WindowAggregator(load_metrics(REPO_ROOT / "metrics", processor.catalog))
    n = len(records)

    def aggregate(_: int) -> int:
        state: dict[str, Any] = {}
        for batch in events:
            state = orjson.loads(orjson.dumps(aggregator.add(state, batch)))
        aggregator.rows(state)
        return n

    def floor(_: int) -> int:
        for record in records:
            orjson.dumps(orjson.loads(binascii.a2b_base64(record.data)))
        return n

    variants = alternate(f"statistics/{workload.name}", {"aggregate": aggregate, "floor": floor}, rounds, n)
    ratio = variants["aggregate"]["best_per_second"] / variants["floor"]["best_per_second"]
    return {"workload": workload.name, "variants": variants,
            "ratios": {"aggregate/floor": {"value": round(ratio, 3), "goal": 0.5}}}
