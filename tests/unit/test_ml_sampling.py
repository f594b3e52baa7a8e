"""The training-data cap: stratified, proportional, seeded; the holdout split; reading Firehose objects."""
from __future__ import annotations

import gzip
import random
from collections import Counter

import orjson
import pytest

from handlers.ml.data import (MISSING_STRATUM, cap_rows, decode_object, proportional_quotas, split_holdout,
                              stratified_sample, window)
from handlers.ml.dataset import Dataset
from tests.ml_kit import definition

pytestmark = pytest.mark.unit


def strata(sizes: dict[str, int], seed: int = 1) -> list[str | None]:
    values: list[str | None] = [key for key, n in sizes.items() for _ in range(n)]
    random.Random(seed).shuffle(values)
    return values


@pytest.mark.parametrize("sizes, cap", [
    ({"ES": 5000, "GB": 3000, "NL": 1500, "PT": 499, "TR": 1}, 1000),
    ({"ES": 7, "GB": 7, "NL": 7}, 10),  # quotas with equal remainders
    ({"ES": 900, None: 100}, 50),  # rows without a stratum are a stratum of their own
])
def test_stratified_sample_respects_the_cap_and_each_strata_share(sizes, cap):
    values = strata(sizes)
    indices, report = stratified_sample(values, cap, seed=7)
    assert len(indices) == cap == report.kept and report.available == len(values)
    assert indices == sorted(set(indices))
    kept = Counter(MISSING_STRATUM if values[i] is None else values[i] for i in indices)
    total = sum(sizes.values())
    for key, n in sizes.items():
        name = MISSING_STRATUM if key is None else key
        assert abs(kept[name] - cap * n / total) < 1, (name, kept[name], cap * n / total)
        assert report.strata[name] == (n, kept[name])


def test_stratified_sample_is_reproducible_for_a_seed_and_differs_across_seeds():
    values = strata({"ES": 3000, "GB": 2000})
    first, _ = stratified_sample(values, 500, seed=1)
    assert stratified_sample(values, 500, seed=1)[0] == first
    assert stratified_sample(values, 500, seed=2)[0] != first


def test_stratified_sample_under_the_cap_keeps_every_row():
    values = strata({"ES": 30, "GB": 20})
    indices, report = stratified_sample(values, 1000, seed=1)
    assert indices == list(range(50)) and report.kept == report.available == 50


def test_proportional_quotas_sum_to_the_cap():
    sizes = {f"s{i}": random.Random(i).randint(1, 1000) for i in range(37)}
    for cap in (1, 10, 333, 5000):
        quotas = proportional_quotas(sizes, cap)
        assert sum(quotas.values()) == min(cap, sum(sizes.values()))
        assert all(0 <= quotas[k] <= sizes[k] for k in sizes)


def test_cap_rows_applies_the_definitions_cap_and_stratum():
    spec = definition(**{"data.max_rows": 100}).data
    rows = [{"country": c, "title": f"t{i}"} for i, c in enumerate(strata({"ES": 600, "GB": 300, "TR": 100}))]
    kinds = {name: "categorical" for name in spec.kinds}
    data = Dataset.from_rows(rows, kinds)
    capped, report = cap_rows(data, spec)
    assert len(capped) == 100 and report.stratify_by == "country" and report.seed == spec.seed
    assert Counter(capped.column("country")) == {"ES": 60, "GB": 30, "TR": 10}


def test_split_holdout_holds_out_the_fraction_of_every_stratum():
    values = strata({"ES": 500, "GB": 300, "TR": 20})
    train, holdout = split_holdout(values, 0.2, seed=3)
    assert sorted(train + holdout) == list(range(len(values)))
    held = Counter(values[i] for i in holdout)
    assert held == {"ES": 100, "GB": 60, "TR": 4}
    assert split_holdout(values, 0.2, seed=3) == (train, holdout)


def test_decode_object_reads_gzip_and_plain_json_lines():
    lines = [orjson.dumps({"messageId": str(i)}) for i in range(3)]
    body = b"\n".join(lines) + b"\n"
    assert decode_object(body) == lines
    assert decode_object(gzip.compress(body)) == lines
    assert decode_object(gzip.compress(lines[0] + b"\n") + gzip.compress(b"\n".join(lines[1:]))) == lines  # members


def test_window_lists_the_look_back_days_oldest_first():
    from datetime import date

    days = window(date(2026, 3, 2), 3)
    assert [d.isoformat() for d in days] == ["2026-02-28", "2026-03-01", "2026-03-02"]
