"""The candidate's gates: absolute thresholds, "not more than x worse than the current model" (point and
paired bootstrap), how far answers may move, golden requests through the serving predict."""
from __future__ import annotations

import numpy as np
import pytest

from handlers.ml.metrics import METRICS, bootstrap_worse_by, evaluate
from handlers.ml.models import price_suggestion
from handlers.ml.report import Baseline
from handlers.ml.training import golden_gates, relative_gates, shift_gate, threshold_gates
from tests.ml_kit import definition

pytestmark = pytest.mark.unit


def noisy(truth: np.ndarray, spread: float, seed: int) -> np.ndarray:
    return truth * np.exp(np.random.default_rng(seed).normal(0, spread, truth.size))


TRUTH = np.exp(np.random.default_rng(0).uniform(np.log(20), np.log(2000), 800))


def test_metric_directions_make_worse_mean_worse():
    assert METRICS["mape"].worse_by(0.55, 0.5) == pytest.approx(0.1)  # lower is better: 10 % worse
    assert METRICS["within_50pct"].worse_by(0.45, 0.5) == pytest.approx(0.1)  # higher is better: 10 % worse
    assert METRICS["mape"].worse_by(0.45, 0.5) < 0


def test_threshold_gates_follow_the_definition():
    model_definition = definition()
    rules = {r.metric: r for r in model_definition.evaluation.thresholds}
    passing = {m: (r.max - 0.01 if r.max is not None else r.min + 0.01) for m, r in rules.items()}
    assert all(g.passed for g in threshold_gates(model_definition, passing))
    failing = {**passing, "median_ape": rules["median_ape"].max + 0.01}
    gates = {g.name: g for g in threshold_gates(model_definition, failing)}
    assert not gates["threshold:median_ape"].passed and gates["threshold:mape"].passed


def test_relative_gate_point_estimate_refuses_more_than_the_margin():
    model_definition = definition(**{"evaluation.relative_confidence": None})
    margin = {r.metric: r.max_worse for r in model_definition.evaluation.relative}["male"]
    baseline = Baseline("v1", {"male": 0.40, "mape": 0.50}, "recorded metrics")
    slightly = relative_gates(model_definition, {"male": 0.40 * (1 + margin / 2), "mape": 0.5}, baseline)
    assert all(g.passed for g in slightly)
    clearly = {g.name: g for g in relative_gates(model_definition, {"male": 0.40 * (1 + 2 * margin),
                                                                   "mape": 0.5}, baseline)}
    assert not clearly["relative:male"].passed
    assert clearly["relative:male"].observed == pytest.approx(2 * margin)
    assert all(g.skipped and g.passed for g in relative_gates(model_definition, {"male": 9, "mape": 9}, None))


def test_relative_gate_with_confidence_tells_worse_from_unlucky():
    model_definition = definition()  # relative_confidence set in the shipped file
    metrics = list(model_definition.evaluation.metrics)
    current = noisy(TRUTH, 0.5, seed=1)

    def gates(candidate: np.ndarray) -> dict:
        base = Baseline("v1", evaluate(metrics, TRUTH, current), "same holdout")
        return {g.name: g for g in relative_gates(model_definition, evaluate(metrics, TRUTH, candidate), base,
                                                 truth=TRUTH, candidate=candidate, current=current)}

    equally_good = gates(noisy(TRUTH, 0.5, seed=2))  # another model of the same quality
    assert all(g.passed for g in equally_good.values()), [g.describe() for g in equally_good.values()]
    much_worse = gates(noisy(TRUTH, 1.0, seed=3))
    assert not much_worse["relative:male"].passed and "confidence" in much_worse["relative:male"].detail


def test_shift_gate_measures_the_median_relative_change():
    model_definition = definition()
    limit = model_definition.guard_rails.max_change_relative
    current = np.array([100.0, 200.0, 300.0])
    within = shift_gate(model_definition, current * (1 + limit / 2), current)
    assert within.passed and within.observed == pytest.approx(limit / 2)
    beyond = shift_gate(model_definition, current * (1 + 2 * limit), current)
    assert not beyond.passed
    assert shift_gate(model_definition, current, None).skipped


@pytest.mark.parametrize("price_eur, failing", [
    (500.0, {"golden:golf_in_valencia", "golden:jacket_in_london"}),  # right for a phone only
    (1e6, None),  # beyond the output guard rail: every golden request fails
])
def test_golden_gates_check_expectations_and_the_output_guard_rail(price_eur, failing):
    """A stand-in estimator answering one fixed price in euros, behind the shipped predict."""
    model_definition = definition()

    class Model:
        def predict(self, matrix):
            return np.full(len(matrix), price_eur)

    model = {"estimator": Model(), "features": list(model_definition.data.features),
             "kinds": {f: model_definition.data.kinds[f] for f in model_definition.data.features},
             "log_interval": [-0.5, 0.5], "eur_rates": dict(model_definition.data.label.eur_rates)}
    gates = {g.name: g for g in golden_gates(model_definition, model)}
    assert set(gates) == {f"golden:{g.name}" for g in model_definition.golden_requests}
    expected_failures = failing if failing is not None else set(gates)
    assert {name for name, g in gates.items() if not g.passed} == expected_failures
    if failing is None:
        assert all("guard rail" in g.detail for g in gates.values())
    assert price_suggestion.predict(model, {"title": "x", "currency": "EUR"})["suggested_price_eur"] == price_eur


# -- classification metrics: the same numbers as scikit-learn's ------------------------------------------------------
def _classification_case(seed: int = 3, n: int = 400, k: int = 5):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(k, p=row) for row in probabilities])  # calibrated by construction
    return truth, probabilities


def test_classification_metrics_agree_with_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    truth, probabilities = _classification_case()
    got = evaluate(["accuracy", "f1_macro", "log_loss", "calibration_error"], truth, probabilities)
    predicted = probabilities.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert got["f1_macro"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert got["log_loss"] == pytest.approx(log_loss(truth, probabilities, labels=list(range(5))))
    assert got["calibration_error"] < 0.06  # drawn from its own probabilities: well calibrated


def test_calibration_error_sees_an_overconfident_model_and_an_unknown_class_is_always_wrong():
    truth, probabilities = _classification_case()
    sharp = probabilities ** 8 / (probabilities ** 8).sum(axis=1, keepdims=True)  # same ranking, overconfident
    honest, overconfident = (evaluate(["calibration_error", "accuracy"], truth, p) for p in (probabilities, sharp))
    assert overconfident["accuracy"] == honest["accuracy"]
    assert overconfident["calibration_error"] > honest["calibration_error"] + 0.05
    unknown = evaluate(["accuracy", "log_loss"], np.array([-1.0, 0.0]), np.array([[0.9, 0.1], [0.9, 0.1]]))
    assert unknown["accuracy"] == 0.5 and unknown["log_loss"] > 15


def test_relative_gate_on_a_classifier_compares_paired_on_the_same_rows():
    truth, probabilities = _classification_case(n=600)
    worse = 0.5 * probabilities + 0.5 / probabilities.shape[1]  # washed out: a worse log loss, same ranking
    samples = bootstrap_worse_by(METRICS["log_loss"], truth, worse, probabilities, seed=1)
    assert np.quantile(samples, 0.1) > 0.1  # worse, with 90 % confidence
    same = bootstrap_worse_by(METRICS["accuracy"], truth, worse, probabilities, seed=1)
    assert np.allclose(same, 0.0)  # the same ranking: the same accuracy on every resample


# -- a market that moves: which metric a relative gate may compare on -------------------------------------------------
@pytest.mark.parametrize("shift", [1.05, 0.95])
def test_mape_punishes_tracking_a_rising_market_and_male_does_not(shift):
    """Prices move by ``shift``; the current model still answers the old market's median, the candidate the new
    one's. MAPE prefers whichever answers lower — it refuses the candidate when prices rise and waves it through
    (even rewards it) when they fall; the log error prefers whichever tracks the market, both ways."""
    rng = np.random.default_rng(5)
    median = np.exp(rng.uniform(np.log(20), np.log(2000), 20_000))
    truth = median * shift * np.exp(rng.normal(0, 0.6, median.size))  # asking prices spread around the median
    current, candidate = median, median * shift
    worse = {name: metric.worse_by(metric.compute(truth, candidate), metric.compute(truth, current))
             for name, metric in ((n, METRICS[n]) for n in ("mape", "male"))}
    assert worse["male"] < 0  # the candidate is better on the log error in either direction
    if shift > 1:
        assert worse["mape"] > 0.02  # MAPE: refused beyond a 2 % margin, for tracking the market
    else:
        assert worse["mape"] < -0.02  # MAPE: the falling market's candidate looks much better than it is
