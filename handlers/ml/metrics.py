"""Evaluation metrics a model definition may name, each with the direction that counts as better.

The direction lives with the metric, not in the YAML, so a threshold can be written the same way for every
metric (``mape: {max: 0.6}``, ``r2: {min: 0.3}``) and "not more than 2 % worse than the current model" means
the right thing whether lower or higher is better.

Comparing two models on one holdout is noisy: two equally good models trained on different samples differ
by a few percent on a few hundred rows. :func:`bootstrap_worse_by` resamples the holdout rows (both models
on the same resampled rows, so the comparison stays paired) to tell "worse" from "unlucky": the relative
gate can then refuse a candidate only when it is worse beyond the allowed margin with a stated confidence.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


class _Numpy:
    """numpy, imported on first use: model definitions name these metrics, and the validator Lambda (which
    reads definitions but computes no metric) runs on python3.11 Lambda, where current numpy wheels do not."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("numpy"), name)


np: Any = _Numpy()


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool
    compute: Callable[[np.ndarray, np.ndarray], float]

    def worse_by(self, candidate: float, current: float) -> float:
        """How much worse ``candidate`` is than ``current``, relative to ``current`` (negative = better)."""
        scale = abs(current) if current else 1.0
        return (current - candidate) / scale if self.higher_is_better else (candidate - current) / scale


def _ape(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.abs(p - y) / np.maximum(np.abs(y), 1e-9)


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - p) ** 2)) / total if total else 0.0


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("mae", "mean absolute error, in label units", False, lambda y, p: float(np.mean(np.abs(p - y)))),
    Metric("rmse", "root mean squared error, in label units", False,
           lambda y, p: float(np.sqrt(np.mean((p - y) ** 2)))),
    Metric("mape", "mean absolute percentage error (0.25 = 25 %)", False, lambda y, p: float(np.mean(_ape(y, p)))),
    Metric("median_ape", "median absolute percentage error", False, lambda y, p: float(np.median(_ape(y, p)))),
    Metric("within_25pct", "share of predictions within 25 % of the truth", True,
           lambda y, p: float(np.mean(_ape(y, p) <= 0.25))),
    Metric("within_50pct", "share of predictions within 50 % of the truth", True,
           lambda y, p: float(np.mean(_ape(y, p) <= 0.5))),
    Metric("r2", "coefficient of determination", True, _r2),
)}


def evaluate(names: tuple[str, ...] | list[str], truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    if truth.shape != predicted.shape or truth.size == 0:
        raise ValueError(f"cannot evaluate {predicted.shape} predictions against {truth.shape} labels")
    return {name: METRICS[name].compute(truth, predicted) for name in names}


def bootstrap_worse_by(metric: Metric, truth: np.ndarray, candidate: np.ndarray, current: np.ndarray, *,
                       rounds: int = 400, seed: int = 0) -> np.ndarray:
    """``metric.worse_by(candidate, current)`` on ``rounds`` paired bootstrap resamples of the holdout rows."""
    truth, candidate, current = (np.asarray(a, dtype=float) for a in (truth, candidate, current))
    rng = np.random.default_rng(seed)
    n = truth.size
    out = np.empty(rounds)
    for r in range(rounds):
        rows = rng.integers(0, n, n)
        out[r] = metric.worse_by(metric.compute(truth[rows], candidate[rows]),
                                 metric.compute(truth[rows], current[rows]))
    return out
