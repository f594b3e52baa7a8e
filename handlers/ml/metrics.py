"""Evaluation metrics a model definition may name, each with its task and the direction that counts as better.

The direction lives with the metric, not in the YAML, so a threshold can be written the same way for every
metric (``mape: {max: 0.6}``, ``r2: {min: 0.3}``) and "not more than 2 % worse than the current model" means
the right thing whether lower or higher is better.

Two tasks. **Regression** metrics compare numbers: ``compute(truth, predicted)``. **Classification** metrics
compare the true class with the predicted *probabilities*: ``compute(truth, probabilities)`` where ``truth``
holds each row's class index (-1 for a class the model never saw: always wrong) and ``probabilities`` one row
per example, one column per class — so log loss and calibration (expected calibration error over 10 confidence
bins) can be measured, not only accuracy and macro F1.

Which metric a *relative* gate compares on matters when the market moves. MAPE (|p - y| / y) is smallest for
answers *below* the median: when prices rise 5 %, the current model (trained on lower prices) scores a better
MAPE than a candidate that tracks the rise, and the gate refuses the better model; when prices fall, the
opposite. ``male`` (mean absolute log error, |ln p - ln y|) is smallest at the median and symmetric in ratio
(×1.05 and ÷1.05 cost the same), so it prefers whichever model tracks the market, in either direction
(measured in tests/functional/test_ml_gates_market.py).

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


REGRESSION, CLASSIFICATION = "regression", "classification"
EPSILON = 1e-15


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool
    compute: Callable[[np.ndarray, np.ndarray], float]
    task: str = REGRESSION

    def worse_by(self, candidate: float, current: float) -> float:
        """How much worse ``candidate`` is than ``current``, relative to ``current`` (negative = better)."""
        scale = abs(current) if current else 1.0
        return (current - candidate) / scale if self.higher_is_better else (candidate - current) / scale


def _ape(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.abs(p - y) / np.maximum(np.abs(y), 1e-9)


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - p) ** 2)) / total if total else 0.0


def _log_error(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.abs(np.log(np.maximum(p, 1e-9)) - np.log(np.maximum(y, 1e-9)))


def _classes(truth: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true class index as ints, predicted class index) of a classification evaluation."""
    return np.asarray(truth).astype(int), np.argmax(probabilities, axis=1)


def _accuracy(truth: np.ndarray, probabilities: np.ndarray) -> float:
    y, p = _classes(truth, probabilities)
    return float(np.mean(y == p))


def _f1_macro(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes that are true or predicted somewhere (as scikit-learn)."""
    y, p = _classes(truth, probabilities)
    scores = []
    for label in np.union1d(y[y >= 0], p):
        tp = float(np.sum((y == label) & (p == label)))
        fp, fn = float(np.sum((y != label) & (p == label))), float(np.sum((y == label) & (p != label)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def _log_loss(truth: np.ndarray, probabilities: np.ndarray) -> float:
    y, _ = _classes(truth, probabilities)
    picked = np.where(y >= 0, probabilities[np.arange(len(y)), np.maximum(y, 0)], 0.0)
    return float(-np.mean(np.log(np.clip(picked, EPSILON, 1.0))))


def _calibration_error(truth: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |accuracy - confidence| per confidence bin, weighted by the bin's share."""
    y, p = _classes(truth, probabilities)
    confidence = np.max(probabilities, axis=1)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(float(np.mean(y[members] == p[members])) - float(confidence[members].mean()))
    return float(total)


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
    Metric("male", "mean absolute log error |ln p - ln y| (symmetric in ratio; not biased low like MAPE)", False,
           lambda y, p: float(np.mean(_log_error(y, p)))),
    Metric("accuracy", "share of rows whose most probable class is the true one", True, _accuracy, CLASSIFICATION),
    Metric("f1_macro", "F1 per class, averaged without weights (rare classes count as much)", True, _f1_macro,
           CLASSIFICATION),
    Metric("log_loss", "mean negative log probability of the true class", False, _log_loss, CLASSIFICATION),
    Metric("calibration_error", "expected calibration error over 10 confidence bins", False, _calibration_error,
           CLASSIFICATION),
)}


def evaluate(names: tuple[str, ...] | list[str], truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Regression: ``predicted`` has the shape of ``truth``. Classification: one row of probabilities per label."""
    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    if truth.size == 0 or predicted.shape[0] != truth.shape[0] or predicted.ndim not in (1, 2):
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
