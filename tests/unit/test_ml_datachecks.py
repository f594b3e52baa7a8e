"""Data checks: PSI and drift against reference statistics, null rates, ranges, schema — every failure listed."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from handlers.ml.datachecks import (OTHER, bin_shares, check_drift, check_null_rates, check_ranges, check_schema,
                                    psi, reference_statistics, run_checks)
from handlers.ml.dataset import Dataset
from handlers.ml.definition_types import CheckSpec, DriftRule, RangeRule

pytestmark = pytest.mark.unit

KINDS = {"price": "numeric", "category": "categorical", "title": "text"}
CATEGORIES = ("bikes", "phones", "cars", "fashion")


def sample(n: int, seed: int, *, mean: float = 5.0, weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1),
           categories: tuple[str, ...] = CATEGORIES, null_every: int = 0) -> Dataset:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append({"price": math.exp(rng.gauss(mean, 1.0)), "category": rng.choices(categories, weights)[0],
                     "title": None if null_every and i % null_every == 0 else f"item {i}"})
    return Dataset.from_rows(rows, KINDS)


def rule_set(**limits: float) -> list[DriftRule]:
    return [DriftRule(column, limit) for column, limit in limits.items()]


def test_psi_is_the_textbook_formula_and_zero_for_identical_shares():
    expected, actual = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    by_hand = sum((a - e) * math.log(a / e) for e, a in zip(expected, actual))
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi(expected, expected) == 0.0
    assert psi(expected, actual) == pytest.approx(psi(actual, expected))  # symmetric by construction
    # an emptied bin is floored, so the index stays finite but large
    assert 1.0 < psi([0.5, 0.5], [1.0, 0.0]) < math.inf


def test_bin_shares_use_the_reference_edges_and_add_up_to_one():
    values = np.array([1.0, 2.0, 2.0, 3.0, 10.0])
    shares = bin_shares(values, [2.0, 5.0])  # (-inf, 2), [2, 5), [5, inf)
    assert shares == pytest.approx([1 / 5, 3 / 5, 1 / 5])
    assert sum(bin_shares(np.random.default_rng(1).normal(size=500), [-1.0, 0.0, 1.0])) == pytest.approx(1.0)


def test_reference_statistics_hold_quantile_bins_and_category_shares():
    data = sample(2000, seed=1)
    stats = reference_statistics(data, bins=10, top_categories=3)
    price = stats["columns"]["price"]
    assert len(price["edges"]) == 9 and price["shares"] == pytest.approx([0.1] * 10, abs=0.01)
    assert price["mean"] == pytest.approx(float(np.mean(data.column("price"))))
    category = stats["columns"]["category"]
    assert set(category["shares"]) == {"bikes", "phones", "cars", OTHER}  # the rarest pooled into __other__
    counts = {c: data.column("category").count(c) / len(data) for c in CATEGORIES}
    assert category["shares"][OTHER] == pytest.approx(counts["fashion"])
    assert stats["columns"]["title"]["kind"] == "text" and stats["rows"] == 2000


def test_drift_same_distribution_passes_and_shifted_distributions_fail():
    reference = reference_statistics(sample(3000, seed=1))
    rules = rule_set(price=0.2, category=0.2)
    same = {r.column: r for r in check_drift(sample(3000, seed=2), reference, rules)}
    assert all(r.passed and not r.skipped for r in same.values())
    assert same["price"].observed < 0.05 and same["category"].observed < 0.05

    moved = {r.column: r for r in check_drift(sample(3000, seed=3, mean=6.0, weights=(0.05, 0.05, 0.2, 0.7)),
                                              reference, rules)}
    assert not moved["price"].passed and moved["price"].observed > 0.2
    assert not moved["category"].passed and "fashion" in moved["category"].detail
    # the observed PSI is the one computed from the reference bins
    expected_shares = reference["columns"]["price"]["shares"]
    actual_shares = bin_shares(np.array(sample(3000, seed=3, mean=6.0).column("price")),
                               reference["columns"]["price"]["edges"])
    assert moved["price"].observed == pytest.approx(psi(expected_shares, actual_shares))


def test_drift_a_new_category_grows_other():
    reference = reference_statistics(sample(2000, seed=1))
    new = sample(2000, seed=2, categories=("bikes", "phones", "cars", "drones"))
    [result] = check_drift(new, reference, rule_set(category=0.2))
    assert not result.passed and OTHER in result.detail


def test_drift_without_reference_is_skipped_not_failed():
    results = check_drift(sample(100, seed=1), None, rule_set(price=0.2, category=0.2))
    assert all(r.passed and r.skipped for r in results)


def test_null_rate_is_measured_per_column_against_its_limit():
    data = sample(1000, seed=1, null_every=10)  # every 10th title missing
    [title, price] = check_null_rates(data, {"title": 0.05, "price": 0.0})
    assert title.observed == pytest.approx(0.1) and not title.passed and title.threshold == 0.05
    assert price.observed == 0.0 and price.passed
    [loose] = check_null_rates(data, {"title": 0.1})
    assert loose.passed


def test_ranges_count_violations_as_a_share_of_present_values():
    data = Dataset.from_rows([{"price": p, "category": c} for p, c in
                              [(5.0, "bikes"), (-1.0, "bikes"), (2e6, "cars"), (None, "drones"), (10.0, "cars")]],
                             {"price": "numeric", "category": "categorical"})
    rules = [RangeRule("price", 0.0, 1e5), RangeRule("category", values=("bikes", "cars"))]
    price, category = check_ranges(data, rules)
    assert price.observed == pytest.approx(2 / 4) and not price.passed  # the missing price is not a violation
    assert category.observed == pytest.approx(1 / 5) and "drones" in category.detail
    [tolerant] = check_ranges(data, [RangeRule("price", 0.0, 1e5, max_violation_rate=0.5)])
    assert tolerant.passed


def test_schema_counts_values_of_the_wrong_kind():
    data = Dataset.from_rows([{"price": "12,50 €"}, {"price": 3.0}, {"price": True}, {"price": None}],
                             {"price": "numeric"})
    [result] = check_schema(data)
    assert not result.passed and result.observed == 2 and "str" in result.detail and "bool" in result.detail


def test_run_checks_reports_every_failure_not_just_the_first():
    reference = reference_statistics(sample(2000, seed=1))
    spec = CheckSpec(min_rows=5000, max_null_rate={"price": 0.0, "category": 0.0, "title": 0.0},
                     ranges=(RangeRule("price", 0.0, 10.0),), drift=tuple(rule_set(price=0.2, category=0.2)),
                     bins=10, top_categories=50)
    report = run_checks(sample(2000, seed=2, mean=6.5, null_every=4), spec, reference)
    failed = {r.key for r in report.failures}
    assert failed == {"min_rows", "null_rate:title", "range:price", "drift:price"}
    assert not report.passed and report.to_dict()["passed"] is False
    assert len(report.to_dict()["results"]) == len(report.results)
