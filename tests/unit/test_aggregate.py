"""Window aggregation: exact against a plain recomputation, independent of how batches fall, retry-proof,
and bounded in size at high cardinality; plus the HyperLogLog it relies on."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from handlers.statistics.aggregate import OTHER, MetricRow, StateTooLarge, WindowAggregator, state_bytes
from handlers.statistics.definitions import MetricDefinition, MetricSet, load_metrics
from handlers.statistics.hll import HyperLogLog
from handlers.tracking.processor import Processor
from handlers.tracking.settings import load_settings
from letgo.traffic import generate
from tests.conftest import record

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """What Lambda does to the state between two invocations of a window."""
    return json.loads(json.dumps(state))


@pytest.fixture(scope="module")
def metric_set(catalog):
    return load_metrics(REPO / "metrics", catalog)


@pytest.fixture(scope="module")
def events(catalog):
    plan = generate(3000, seed=11, now=NOW)
    records = [record(r.data, str(i), NOW.timestamp()) for i, r in enumerate(plan.records)]
    result = Processor(catalog, load_settings()).process(records)
    assert len(result.events) > 2500
    return result.events


def lookup(event: Any, path: str) -> Any:
    if path == "type":
        return event.type
    value: Any = {"properties": event.properties, "context": event.context}
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def recompute(metric: MetricDefinition, events: list[Any]) -> dict[str, dict[str, Any]]:
    """The obvious per-metric computation, independent of the aggregator's code."""
    groups: dict[str, dict[str, Any]] = {}
    for event in events:
        if metric.event_type not in ("*", event.type):
            continue
        if any(lookup(event, path) not in allowed for path, allowed in metric.where):
            continue
        value = lookup(event, metric.field) if metric.field else None
        if metric.field and not isinstance(value, (int, float)):
            continue
        key = json.dumps([lookup(event, path) for path in metric.group_by], ensure_ascii=False,
                         separators=(",", ":"))
        group = groups.setdefault(key, {"count": 0, "values": [], "users": set()})
        group["count"] += 1
        if value is not None:
            group["values"].append(float(value))
        group["users"].add(event.user_id or event.anonymous_id)
    return groups


def by_metric(rows: list[MetricRow]) -> dict[str, dict[str, MetricRow]]:
    out: dict[str, dict[str, MetricRow]] = defaultdict(dict)
    for row in rows:
        out[row.metric][row.dims_key] = row
    return out


# -- aggregation against a plain recomputation --------------------------------------------------------
def test_add_rows_match_a_straightforward_recomputation(metric_set, events):
    aggregator = WindowAggregator(metric_set)
    rows = by_metric(aggregator.rows(aggregator.add({}, events)))
    for metric in metric_set.metrics:
        expected = recompute(metric, events)
        assert expected, f"the generated traffic should exercise {metric.name}"
        assert set(rows[metric.name]) == set(expected), metric.name
        for key, group in expected.items():
            row = rows[metric.name][key]
            assert row.count == group["count"]
            assert row.dims == dict(zip(metric.group_by, json.loads(key)))
            values = group["values"]
            if metric.aggregation in ("sum", "min", "max", "avg"):
                assert row.sum == pytest.approx(sum(values))
                assert (row.min, row.max) == (min(values), max(values))
                plain = {"sum": sum(values), "min": min(values), "max": max(values),
                         "avg": sum(values) / len(values)}[metric.aggregation]
                assert row.value == pytest.approx(plain)
            elif metric.aggregation == "count":
                assert (row.value, row.sum, row.min, row.max, row.distinct) == (group["count"], None, None, None, None)
            else:
                exact = len(group["users"])
                assert abs(row.distinct - exact) <= max(2, 0.05 * exact)
                assert row.value == row.distinct


def test_add_where_filter_and_missing_dims(catalog):
    lead = MetricDefinition("offers", 1, "d", "Lead", (("properties.channel", ("offer",)),),
                            ("properties.currency", "context.os.name"), 60, "sum", "properties.offer_amount", "x")
    aggregator = WindowAggregator(MetricSet((lead,), 60))
    events = [Stub("Lead", f"m{i}", "u", {"channel": channel, "offer_amount": amount, "currency": "EUR"})
              for i, (channel, amount) in enumerate([("offer", 10), ("chat", 99), ("offer", 5.5), ("offer", None)])]
    (row,) = aggregator.rows(aggregator.add({}, events))
    assert row.dims == {"properties.currency": "EUR", "context.os.name": None}
    assert row.dims_key == '["EUR",null]'
    assert (row.count, row.sum, row.min, row.max, row.value) == (2, 15.5, 5.5, 10.0, 15.5)


# -- invocation boundaries, retries --------------------------------------------------------------------
def test_add_split_over_many_invocations_gives_the_same_rows(metric_set, events):
    aggregator = WindowAggregator(metric_set)
    whole = aggregator.rows(aggregator.add({}, events))
    rng = random.Random(3)
    state: dict[str, Any] = {}
    start = 0
    while start < len(events):
        size = rng.choice([1, 7, 50, 100, 333])
        state = roundtrip(aggregator.add(state, events[start:start + size]))
        start += size
    assert aggregator.rows(state) == whole
    assert state["events"] == len(events) and state["duplicates"] == 0


def test_add_duplicates_across_invocations_are_not_double_counted(metric_set, events):
    aggregator = WindowAggregator(metric_set)
    first, retried = events[:1000], events[600:1500]  # the SDK re-sent 400 events in a later batch
    state = roundtrip(aggregator.add({}, first))
    state = roundtrip(aggregator.add(state, retried))
    state = roundtrip(aggregator.add(state, events[1400:1500]))  # and redelivered some again
    assert aggregator.rows(state) == aggregator.rows(aggregator.add({}, events[:1500]))
    assert state["duplicates"] == 500 and state["events"] == 1500
    assert not any(row.dedup_dropped for row in aggregator.rows(state))


def test_add_does_not_modify_the_given_state_and_records_arrival(metric_set, events):
    aggregator = WindowAggregator(metric_set)
    state = roundtrip(aggregator.add({}, events[:10]))
    before = json.dumps(state)
    arrivals = iter(range(100, 110))
    after = aggregator.add(state, events[10:20], arrival_of=lambda event: next(arrivals))
    assert json.dumps(state) == before
    assert after["arrival"] == [100, 109]
    assert aggregator.rows({}) == []


# -- size policy -----------------------------------------------------------------------------------------
class Stub:
    """A lightweight stand-in with the attributes the aggregator reads from an Event."""

    __slots__ = ("type", "message_id", "user_id", "anonymous_id", "properties", "context")

    def __init__(self, type: str, message_id: str, user_id: str | None, properties: dict[str, Any],
                 context: dict[str, Any] | None = None, anonymous_id: str | None = None) -> None:
        self.type, self.message_id, self.user_id, self.anonymous_id = type, message_id, user_id, anonymous_id
        self.properties, self.context = properties, context or {}


def city_metrics() -> MetricSet:
    city = ("context.location.city",)
    return MetricSet((
        MetricDefinition("users_per_city", 1, "d", "AppOpened", (), city, 60, "distinct_users", None, "a.yaml"),
        MetricDefinition("opens_per_city", 1, "d", "AppOpened", (), city, 60, "count", None, "b.yaml"),
    ), 60)


def city_events(n_users: int, n_groups: int, offset: int = 0) -> list[Stub]:
    return [Stub("AppOpened", f"msg-{i}", None, {"source": "push"},
                 {"location": {"city": f"city-{i % n_groups:04d}"}}, anonymous_id=f"anon-{i}")
            for i in range(offset, offset + n_users)]


def test_state_200k_users_in_2000_groups_stays_under_1mb():
    aggregator = WindowAggregator(city_metrics())
    state: dict[str, Any] = {}
    for part in range(4):  # four invocations, the state round-tripping in between as in Lambda
        events = city_events(50_000, 2000, offset=part * 50_000)
        again = city_events(12_500, 2000, offset=part * 50_000)  # a quarter of the users open the app twice
        for event in again:
            event.message_id += "-again"
        state = roundtrip(aggregator.add(state, events + again))
        assert state_bytes(state) <= 900_000
    assert len(json.dumps(state).encode()) < 1_000_000
    assert state["dedup_dropped"] is True  # 250k message ids alone need ~2.7 MB: the policy gave them up
    rows = by_metric(aggregator.rows(state))
    counts = rows["opens_per_city"]
    assert len(counts) == 2000 and OTHER not in json.dumps(list(counts))
    assert sum(row.count for row in counts.values()) == 250_000  # counts stay exact
    distinct = rows["users_per_city"]
    assert len(distinct) == 2000 and all(row.dedup_dropped for row in distinct.values())
    assert abs(sum(row.distinct for row in distinct.values()) - 200_000) < 0.10 * 200_000
    assert max(abs(row.distinct - 100) / 100 for row in distinct.values()) < 0.10  # every city's 100 users


def test_state_folds_sketches_to_keep_the_dedup_set_when_that_suffices():
    metrics = MetricSet(tuple(
        MetricDefinition(f"users_{i}", 1, "d", "AppOpened", (), ("context.location.city",), 60, "distinct_users",
                         None, f"{i}.yaml") for i in range(3)), 60)
    events = city_events(10_000, 20)  # 500 users per city: dense sketches, 3 metrics of 20 each
    roomy = roundtrip(WindowAggregator(metrics, max_state_bytes=10**7).add({}, events))
    tight = WindowAggregator(metrics, max_state_bytes=state_bytes(roomy) - 1000)
    state = roundtrip(tight.add({}, events))
    assert state["hll_p"] == 9 and state["dedup_dropped"] is False
    assert state_bytes(state) <= state_bytes(roomy) - 1000
    state = roundtrip(tight.add(state, events[:100]))  # retries still recognised
    assert state["duplicates"] == 100 and state["events"] == 10_000
    for row in tight.rows(state):
        assert abs(row.distinct - 500) < 0.15 * 500


def test_state_over_the_limit_merges_smallest_groups_into_other():
    aggregator = WindowAggregator(city_metrics(), max_state_bytes=30_000)
    events = city_events(20_000, 2000) + city_events(5_000, 10, offset=20_000)  # ten big cities
    state = roundtrip(aggregator.add({}, events))
    assert state_bytes(state) <= 30_000
    rows = by_metric(aggregator.rows(state))
    counts = rows["opens_per_city"]
    assert sum(row.count for row in counts.values()) == 25_000
    assert counts[json.dumps([OTHER])].dims == {"context.location.city": OTHER}
    for big in range(10):  # the largest groups keep their own rows
        assert counts[json.dumps([f"city-{big:04d}"])].count == 510
    # the sketches took most space, so the distinct metric gave up its breakdown first: one p=6 sketch of
    # all 25k users now (standard error ~13%) - a sane estimate, not a tight one
    (users,) = rows["users_per_city"].values()
    assert users.dims_key == json.dumps([OTHER]) and users.count == 25_000
    assert abs(users.distinct - 25_000) < 0.35 * 25_000
    # a later invocation still fits and keeps totals
    state = roundtrip(aggregator.add(state, city_events(1000, 2000, offset=30_000)))
    assert state_bytes(state) <= 30_000
    assert sum(r.count for r in by_metric(aggregator.rows(state))["opens_per_city"].values()) == 26_000


def test_state_that_cannot_fit_raises():
    with pytest.raises(StateTooLarge):
        WindowAggregator(city_metrics(), max_state_bytes=100).add({}, city_events(10, 2))


# -- HyperLogLog -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [10_000, 100_000])
def test_hll_relative_error_under_5_percent(n):
    """p=10: standard error 1.04/sqrt(1024) ≈ 3.3%, so one set misses 5% by chance (1 in ~8): average ten."""
    errors = []
    for seed in range(10):
        sketch = HyperLogLog(10)
        for i in range(n):
            sketch.add(f"user-{seed}-{i}")
        errors.append(abs(sketch.estimate() - n) / n)
    assert max(errors) < 0.10  # three standard errors
    assert sum(errors) / len(errors) < 0.05


def test_hll_small_range_uses_linear_counting():
    sketch = HyperLogLog(10)
    for i in range(300):
        sketch.add(f"u{i}")
    assert abs(sketch.estimate() - 300) < 10
    assert HyperLogLog().estimate() == 0


def test_hll_merge_of_two_halves_is_the_whole():
    whole, left, right = HyperLogLog(10), HyperLogLog(10), HyperLogLog(10)
    for i in range(50_000):
        whole.add(f"v{i}")
        (left if i % 2 else right).add(f"v{i}")
    left.merge(right)
    assert left == whole


def test_hll_fold_halves_the_size_and_equals_a_sketch_built_at_the_lower_precision():
    fine, coarse = HyperLogLog(10), HyperLogLog(8)
    for i in range(20_000):
        fine.add(f"w{i}")
        coarse.add(f"w{i}")
    once = fine.fold(9)
    assert len(once.registers) == len(fine.registers) // 2
    assert len(once.to_bytes()) - 1 == (len(fine.to_bytes()) - 1) // 2
    assert fine.fold(8) == coarse == once.fold(8)
    assert abs(coarse.estimate() - 20_000) / 20_000 < 0.15


def test_hll_merge_across_precisions_folds_to_the_coarser():
    fine, coarse, expected = HyperLogLog(12), HyperLogLog(9), HyperLogLog(9)
    for i in range(5000):
        (fine if i < 2500 else coarse).add(f"x{i}")
        expected.add(f"x{i}")
    fine.merge(coarse)
    assert fine.p == 9 and fine == expected


@pytest.mark.parametrize("n", [0, 5, 5000])
def test_hll_bytes_round_trip_dense_and_sparse(n):
    sketch = HyperLogLog(10)
    for i in range(n):
        sketch.add(f"y{i}")
    data = sketch.to_bytes()
    assert HyperLogLog.from_bytes(data) == sketch
    if n == 5:
        assert len(data) == 1 + 3 * 5  # sparse while few registers are set


@pytest.mark.parametrize("p", [3, 15])
def test_hll_precision_out_of_range_is_refused(p):
    with pytest.raises(ValueError):
        HyperLogLog(p)
