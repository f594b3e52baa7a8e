"""Checks on training data before any training starts: pure functions over a :class:`Dataset`.

A model trained on broken or shifted data is worse than no new model, and the cheapest place to notice is
before the fit. Every check produces a :class:`CheckResult` (which check, which column, observed value,
threshold, a readable detail), and :func:`run_checks` returns them all in a :class:`DataCheckReport` — every
failure, not just the first, so one alert tells the whole story. (Both are plain values of
:mod:`handlers.ml.report`, with the rest of a training run's record.)

Drift is the population stability index, PSI = Σ (actual − expected) · ln(actual / expected), over bins
fixed by the *reference statistics*: the training data of the model currently served, stored with it (see
:func:`reference_statistics`). Numeric columns use that data's quantile bin edges, categorical ones its
category shares (the most frequent ``top_categories`` by name, the rest pooled as ``__other__``, so a
brand-new category shows up as growth of ``__other__``). Empty bins are floored at ``EPSILON`` so a bin
that appears or vanishes gives a large but finite PSI. Common reading: < 0.1 stable, 0.1–0.25 moderate
shift, > 0.25 large shift. The first model has no reference: its drift checks are reported as skipped.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from handlers.ml.dataset import Dataset
from handlers.ml.report import CheckResult, DataCheckReport

OTHER = "__other__"
EPSILON = 1e-4


# -- value helpers ---------------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def conforms(value: Any, kind: str) -> bool:
    """Whether a present value has the column's kind."""
    if kind == "numeric":
        return _is_number(value)
    if kind == "text":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, (str, int))  # categorical: labels, codes or flags (bool is an int)


def category_key(value: Any) -> str:
    """The JSON-safe name of a category (booleans as true/false, codes as their digits)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def numbers(values: Iterable[Any]) -> np.ndarray:
    return np.fromiter((float(v) for v in values if _is_number(v)), dtype=float)


def psi(expected: Sequence[float], actual: Sequence[float], *, epsilon: float = EPSILON) -> float:
    """Population stability index of two share vectors over the same bins."""
    if len(expected) != len(actual):
        raise ValueError(f"{len(expected)} expected shares against {len(actual)} actual ones")
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(float(e), epsilon), max(float(a), epsilon)
        total += (a - e) * math.log(a / e)
    return total


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Interior bin edges at the ``bins``-quantiles (ties collapse: fewer, wider bins)."""
    if values.size == 0:
        return []
    edges = np.quantile(values, [k / bins for k in range(1, bins)])
    return sorted({float(e) for e in edges})


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of values in each of the ``len(edges) + 1`` bins (a value equal to an edge goes right)."""
    if values.size == 0:
        return [0.0] * (len(edges) + 1)
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), values, side="right"),
                         minlength=len(edges) + 1)
    return [float(c) / values.size for c in counts]


def category_shares(values: Iterable[Any], categories: Sequence[str]) -> dict[str, float]:
    """Share of each named category, everything else pooled under ``__other__``."""
    keys = [category_key(v) for v in values if v is not None]
    known = set(categories)
    counts = Counter(k if k in known else OTHER for k in keys)
    n = len(keys) or 1
    return {**{c: counts.get(c, 0) / n for c in categories}, OTHER: counts.get(OTHER, 0) / n}


# -- reference statistics --------------------------------------------------------------------------------------
def reference_statistics(dataset: Dataset, *, bins: int = 10, top_categories: int = 50) -> dict[str, Any]:
    """Per-column statistics of a training set, stored with the model as the reference for drift (JSON-safe)."""
    n = len(dataset)
    columns: dict[str, Any] = {}
    for name, kind in dataset.kinds.items():
        values = dataset.column(name)
        present = [v for v in values if v is not None]
        stats: dict[str, Any] = {"kind": kind, "count": len(present),
                                 "null_rate": (n - len(present)) / n if n else 0.0}
        if kind == "numeric":
            array = numbers(present)
            edges = quantile_edges(array, bins)
            empty = array.size == 0
            stats.update(mean=None if empty else float(array.mean()), std=None if empty else float(array.std()),
                         min=None if empty else float(array.min()), max=None if empty else float(array.max()),
                         edges=edges, shares=bin_shares(array, edges))
        elif kind in ("categorical", "boolean"):
            frequent = [k for k, _ in Counter(category_key(v) for v in present).most_common(top_categories)]
            stats["shares"] = category_shares(present, sorted(frequent))
        else:  # text: its length is what drifts visibly (truncation, a new client sending empty titles)
            lengths = numbers(len(v) for v in present if isinstance(v, str))
            stats["mean_length"] = float(lengths.mean()) if lengths.size else None
        columns[name] = stats
    return {"rows": n, "columns": columns}


# -- the checks ------------------------------------------------------------------------------------------------
def check_min_rows(dataset: Dataset, min_rows: int) -> CheckResult:
    n = len(dataset)
    return CheckResult("min_rows", None, n >= min_rows, n, min_rows,
                       "" if n >= min_rows else f"only {n} rows, at least {min_rows} needed")


def check_schema(dataset: Dataset) -> list[CheckResult]:
    """Every present value has its column's kind (a client sending "12,50 €" as a price shows up here)."""
    results = []
    for name, kind in dataset.kinds.items():
        wrong = [v for v in dataset.column(name) if v is not None and not conforms(v, kind)]
        detail = ""
        if wrong:
            kinds_seen = Counter(type(v).__name__ for v in wrong)
            detail = f"{len(wrong)} values are not {kind}: " + ", ".join(f"{k} ×{c}" for k, c in kinds_seen.items())
        results.append(CheckResult("schema", name, not wrong, len(wrong), 0, detail))
    return results


def check_null_rates(dataset: Dataset, limits: Mapping[str, float]) -> list[CheckResult]:
    n = len(dataset) or 1
    results = []
    for name, limit in limits.items():
        missing = sum(1 for v in dataset.column(name) if v is None)
        rate = missing / n
        results.append(CheckResult("null_rate", name, rate <= limit, rate, limit,
                                   f"{missing} of {len(dataset)} rows have no {name}" if rate > limit else ""))
    return results


def check_ranges(dataset: Dataset, rules: Iterable[Any]) -> list[CheckResult]:
    """Numeric bounds (``min``/``max``) or allowed categories (``values``); ``max_violation_rate`` may miss."""
    results = []
    for rule in rules:
        values = [v for v in dataset.column(rule.column) if v is not None]
        if rule.values is not None:
            allowed = {category_key(v) for v in rule.values}
            bad = [v for v in values if category_key(v) not in allowed]
            sample = ", ".join(sorted({category_key(v) for v in bad})[:5])
            detail = f"{len(bad)} values outside the allowed set, e.g. {sample}" if bad else ""
        else:
            array = numbers(values)
            low = rule.min if rule.min is not None else -math.inf
            high = rule.max if rule.max is not None else math.inf
            outside = array[(array < low) | (array > high)]
            bad = list(outside)
            detail = (f"{len(bad)} values outside [{low:g}, {high:g}] (seen {outside.min():g} .. {outside.max():g})"
                      if bad else "")
        rate = len(bad) / len(values) if values else 0.0
        results.append(CheckResult("range", rule.column, rate <= rule.max_violation_rate, rate,
                                   rule.max_violation_rate, detail))
    return results


def column_psi(values: Sequence[Any], reference: Mapping[str, Any]) -> tuple[float, str]:
    """PSI of one column against its reference statistics, and what moved most."""
    if reference["kind"] == "numeric":
        array = numbers(values)
        actual = bin_shares(array, reference["edges"])
        mean = float(array.mean()) if array.size else float("nan")
        return psi(reference["shares"], actual), f"mean {mean:.4g} vs reference {reference['mean']:.4g}"
    expected: Mapping[str, float] = reference["shares"]
    actual_shares = category_shares(values, [k for k in expected if k != OTHER])
    keys = list(expected)
    moved = max(keys, key=lambda k: abs(actual_shares[k] - expected[k]))
    return (psi([expected[k] for k in keys], [actual_shares[k] for k in keys]),
            f"largest shift {moved}: {expected[moved]:.1%} -> {actual_shares[moved]:.1%}")


def check_drift(dataset: Dataset, reference: Mapping[str, Any] | None, rules: Iterable[Any]) -> list[CheckResult]:
    results = []
    for rule in rules:
        ref = (reference or {}).get("columns", {}).get(rule.column)
        present = [v for v in dataset.column(rule.column) if v is not None]
        if ref is None or ref.get("kind") != dataset.kinds[rule.column] or ref["kind"] == "text":
            why = "no reference statistics (no current model)" if reference is None else \
                "the current model has no comparable statistics for this column"
            results.append(CheckResult("drift", rule.column, True, 0.0, rule.max_psi, why, skipped=True))
            continue
        if not present:
            results.append(CheckResult("drift", rule.column, True, 0.0, rule.max_psi,
                                       "no values to compare (see the null-rate check)", skipped=True))
            continue
        value, detail = column_psi(present, ref)
        results.append(CheckResult("drift", rule.column, value <= rule.max_psi, value, rule.max_psi, detail))
    return results


def run_checks(dataset: Dataset, spec: Any, reference: Mapping[str, Any] | None = None) -> DataCheckReport:
    """Every check of a :class:`~handlers.ml.definition_types.CheckSpec`; drift only where a reference exists."""
    results = [check_min_rows(dataset, spec.min_rows), *check_schema(dataset),
               *check_null_rates(dataset, spec.max_null_rate), *check_ranges(dataset, spec.ranges),
               *check_drift(dataset, reference, spec.drift)]
    return DataCheckReport(len(dataset), tuple(results))
