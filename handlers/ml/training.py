"""The training job: load -> check the data -> train -> judge -> publish only on success.

Stages (one log line each, with counts and timings, so a Batch job's log reads as progress):

1. **load** the definition's event type for its look-back window from the processed events, de-duplicated
   by ``messageId``; **cap** to ``max_rows``, stratified (:mod:`handlers.ml.data`).
2. **check** the data (:mod:`handlers.ml.datachecks`): schema, null rates, ranges, and drift against the
   reference statistics stored with the model currently served. Any failure **blocks**: nothing is trained,
   Sentry gets one report, :class:`~handlers.ml.errors.DataChecksFailed` carries the report.
3. **train** through the definition's entry point on a stratified split; the holdout is never seen.
4. **round-trip** the candidate through skops with the definition's allow-list; everything after this point
   judges the *reloaded* artefact, i.e. exactly the bytes that would be published.
5. **judge** it: the definition's metrics on the holdout; absolute thresholds; the current model run on the
   *same* holdout (champion/challenger — comparing with metrics recorded on other data would reward a lucky
   split) for the relative thresholds and the guard rail on how far answers may move; the golden requests
   offline through the serving ``predict`` and the output guard rail. Any failed gate **rejects** the
   candidate: Sentry, :class:`~handlers.ml.errors.GatesFailed`.
6. **publish** (:meth:`handlers.ml.store.ModelStore.publish`) as a *candidate*: artefact and metadata first,
   ``candidate.json`` last. Users do not get it: the validator asks it the golden requests on the serving
   fleet, then promotes it to live — or rejects it and alerts.

Regressions and classifiers go through the same stages; what differs (labels as numbers or class names,
predictions as numbers or class probabilities, their metrics) is :class:`Scored`'s and
:mod:`handlers.ml.metrics`' business. If the current model cannot be loaded (tampered, removed, from an
incompatible library), the relative gates fall back to its recorded metrics and the report says so; if the
live pointer itself is unreadable or names a missing version, the run trains without a baseline (its notes say
why): a broken live model must not prevent its replacement.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import asdict
from datetime import date, datetime, timezone
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from handlers.ml import artifacts
from handlers.ml.alerts import report_training_problem
from handlers.ml.data import EVENTS_PREFIX, cap_rows, load_rows, split_holdout
from handlers.ml.datachecks import reference_statistics, run_checks
from handlers.ml.dataset import Dataset
from handlers.ml.definition_types import ModelDefinition
from handlers.ml.errors import DataChecksFailed, GatesFailed, InvalidModelInput, StoreError
from handlers.ml.metrics import METRICS, bootstrap_worse_by, evaluate
from handlers.ml.report import Baseline, Decision, Gate, TrainingReport
from handlers.ml.store import ModelStore

log = logging.getLogger(__name__)

LIBRARIES = ("scikit-learn", "skops", "numpy", "scipy")
ROUND_TRIP_ROWS = 64


# -- provenance ------------------------------------------------------------------------------------------------
def code_version(environ: Mapping[str, str] = os.environ) -> str:
    """``CODE_VERSION`` / ``GIT_SHA`` (the image sets it at build), else the checkout's git HEAD, else unknown."""
    for name in ("CODE_VERSION", "GIT_SHA"):
        if environ.get(name):
            return environ[name]
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# -- judging ---------------------------------------------------------------------------------------------------
def classifies(definition: ModelDefinition) -> bool:
    return definition.data.label.kind == "categorical"


def _labels(data: Dataset, definition: ModelDefinition) -> np.ndarray:
    """What the training entry point learns: floats for a regression, the class names for a classifier."""
    values = data.column(definition.data.label.name)
    if classifies(definition):
        return np.asarray([str(v) for v in values], dtype=object)
    return np.asarray(values, dtype=float)


class Scored:
    """A model's answers on the holdout in the form the metrics take (see :mod:`handlers.ml.metrics`).

    Regression: ``predict_batch`` returns one number per row, compared as is. Classification: it returns
    ``(classes, probabilities)``; every model is aligned on one class list (the holdout's classes and every
    model's), so two models and the truth index the same columns, and a class a model never learnt counts
    as probability 0.
    """

    def __init__(self, definition: ModelDefinition, holdout: Dataset) -> None:
        self.classifier = classifies(definition)
        self.definition, self.holdout = definition, holdout
        self.universe: list[str] = sorted({str(v) for v in holdout.column(definition.data.label.name)})

    def raw(self, model: Any, data: Dataset | None = None) -> Any:
        out = self.definition.predict_batch(model, self.holdout if data is None else data)
        if not self.classifier:
            return np.asarray(out, dtype=float)
        classes, probabilities = out
        classes = [str(c) for c in classes]
        self.universe = sorted(set(self.universe) | set(classes))
        return classes, np.asarray(probabilities, dtype=float)

    def matrix(self, raw: Any) -> np.ndarray:
        if not self.classifier:
            return raw
        classes, probabilities = raw
        out = np.zeros((probabilities.shape[0], len(self.universe)))
        for j, name in enumerate(classes):
            out[:, self.universe.index(name)] = probabilities[:, j]
        return out

    def truth(self) -> np.ndarray:
        values = self.holdout.column(self.definition.data.label.name)
        if not self.classifier:
            return np.asarray(values, dtype=float)
        return np.asarray([self.universe.index(str(v)) for v in values], dtype=float)


def threshold_gates(definition: ModelDefinition, metrics: Mapping[str, float]) -> list[Gate]:
    gates = []
    for rule in definition.evaluation.thresholds:
        value = metrics[rule.metric]
        problem = rule.problem(value)
        limit = rule.max if rule.max is not None else rule.min
        gates.append(Gate(f"threshold:{rule.metric}", problem is None, value, limit, problem or ""))
    return gates


def relative_gates(definition: ModelDefinition, metrics: Mapping[str, float], baseline: Baseline | None, *,
                   truth: np.ndarray | None = None, candidate: np.ndarray | None = None,
                   current: np.ndarray | None = None) -> list[Gate]:
    """"At most ``max_worse`` worse than the current model", per metric.

    With both models' answers on the same holdout and ``evaluation.relative_confidence`` set, the candidate is
    refused only when the paired bootstrap says it is worse beyond the margin with that confidence (the
    ``1 - confidence`` quantile of the degradation exceeds ``max_worse``); otherwise point estimates decide.
    """
    confidence = definition.evaluation.confidence
    paired = confidence is not None and truth is not None and candidate is not None and current is not None
    gates = []
    for rule in definition.evaluation.relative:
        name = f"relative:{rule.metric}"
        if baseline is None or rule.metric not in baseline.metrics:
            why = "no current model" if baseline is None else f"the current model has no recorded {rule.metric}"
            gates.append(Gate(name, True, None, rule.max_worse, why, skipped=True))
            continue
        metric = METRICS[rule.metric]
        worse = metric.worse_by(metrics[rule.metric], baseline.metrics[rule.metric])
        detail = (f"{rule.metric} {metrics[rule.metric]:.4g} vs current {baseline.version} "
                  f"{baseline.metrics[rule.metric]:.4g} ({baseline.basis}): {worse:+.1%}")
        decisive = worse
        if paired:
            samples = bootstrap_worse_by(metric, truth, candidate, current, seed=definition.data.seed)  # type: ignore[arg-type]
            decisive = float(np.quantile(samples, 1 - confidence))  # type: ignore[operator]
            detail += f"; worse by at least {decisive:+.1%} with {confidence:.0%} confidence"
        gates.append(Gate(name, decisive <= rule.max_worse, worse, rule.max_worse, detail))
    return gates


def shift_gate(definition: ModelDefinition, candidate: np.ndarray, current: np.ndarray | None) -> Gate:
    """Median relative change of the answers on the holdout against the current model (the guard rail)."""
    limit = definition.guard_rails.max_change_relative
    if classifies(definition) or limit is None:
        return Gate("prediction_shift", True, None, limit, "no max_change rail (a classifier is judged by its "
                                                           "relative gates)", skipped=True)
    if current is None:
        return Gate("prediction_shift", True, None, limit, "no current model to compare with", skipped=True)
    change = float(np.median(np.abs(candidate - current) / np.maximum(np.abs(current), 1e-9)))
    return Gate("prediction_shift", change <= limit, change, limit,
                f"the median answer would move by {change:.1%}")


def golden_gates(definition: ModelDefinition, model: Any) -> list[Gate]:
    """Each golden request through the serving predict, the output guard rail and its expectations — what the
    validator will ask live, judged the same way (a clamped or withheld answer fails)."""
    from handlers.ml.serving.guards import guard

    gates = []
    for golden in definition.golden_requests:
        endpoint = definition.endpoint(golden.endpoint)
        try:
            response = definition.predict(model, endpoint.validate(dict(golden.input)))
            guarded = guard(definition.guard_rails, response)
        except InvalidModelInput as exc:
            gates.append(Gate(f"golden:{golden.name}", False, detail=f"input refused: {exc}"))
            continue
        except Exception as exc:  # noqa: BLE001 - a crashing predict is a failed gate, not a crashed job
            gates.append(Gate(f"golden:{golden.name}", False, detail=f"predict raised {type(exc).__name__}: {exc}"))
            continue
        problems = [p for p in [definition.guard_rails.output_problem(response) if not guarded.abstained else
                                f"withheld: {guarded.why}", *golden.problems(guarded.outputs)] if p]
        gates.append(Gate(f"golden:{golden.name}", not problems, detail="; ".join(problems)))
    return gates


# -- the job ---------------------------------------------------------------------------------------------------
class _Stages:
    """Numbered, timed log lines: the job's progress in the Batch log."""

    def __init__(self, model: str, total: int) -> None:
        self.model, self.total, self.n, self.t = model, total, 0, time.monotonic()

    def __call__(self, message: str, *args: Any) -> None:
        self.n += 1
        log.info(f"[%s %d/%d +%.1fs] {message}", self.model, self.n, self.total, time.monotonic() - self.t, *args)


def run_training(definition: ModelDefinition, *, events_s3: Any, processed_bucket: str, store: ModelStore,
                 end: date | None = None, events_prefix: str = EVENTS_PREFIX, version_of_code: str | None = None,
                 alert: Callable[[TrainingReport], Any] = report_training_problem,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> TrainingReport:
    """Train, judge and maybe publish one model; returns the report of a published model.

    Raises :class:`DataChecksFailed` (decision ``blocked``) or :class:`GatesFailed` (``rejected``) after
    ``alert`` has been called with the report; the store's pointer has not moved in either case.
    """
    started = clock()
    t0 = time.monotonic()
    end = end or started.date()
    code = version_of_code or code_version()
    name = definition.name
    stage = _Stages(name, 6)

    notes: list[str] = []

    def finish(decision: Decision, **parts: Any) -> TrainingReport:
        return TrainingReport(model=name, decision=decision, code_version=code,
                              started_at=started.isoformat(timespec="seconds"),
                              duration_seconds=time.monotonic() - t0, notes=tuple(notes), **parts)

    stage("loading %s events, %d days to %s", definition.data.event_type, definition.data.lookback_days, end)
    loaded, load = load_rows(events_s3, processed_bucket, definition.data, end=end, prefix=events_prefix)
    dataset, sampling = cap_rows(loaded, definition.data)

    current, current_problem = _current(store, name)
    if current_problem:
        notes.append(f"the live version cannot be read ({current_problem}): no drift reference, no baseline; "
                     f"this run can replace it")
    stage("checking %d rows%s", len(dataset),
          f" against the reference of version {current.version}" if current else " (no current model: no drift)")
    checks = run_checks(dataset, definition.checks, current.reference_stats if current else None)
    if not checks.passed:
        report = finish(Decision.BLOCKED, version=None, load=load, sampling=sampling, checks=checks)
        log.warning("%s", report.summary())  # warning: the alert itself goes out once, fingerprinted
        alert(report)
        raise DataChecksFailed(report)

    labelled = dataset.where_present(definition.data.label.name)
    train_idx, holdout_idx = split_holdout(labelled.column(definition.data.stratify_by),
                                           definition.data.holdout_fraction, definition.data.seed)
    train, holdout = labelled.take(train_idx), labelled.take(holdout_idx)
    stage("training %s on %d rows (holdout %d)", definition.train.target, len(train), len(holdout))
    fitted = definition.train(train, _labels(train, definition), definition, seed=definition.data.seed)

    stage("serialising with skops and reloading with the allow-list")
    artefact = artifacts.dumps(fitted)
    common = dict(load=load, sampling=sampling, checks=checks, train_rows=len(train), holdout_rows=len(holdout))
    scored = Scored(definition, holdout)
    try:
        model = artifacts.loads(artefact, definition.trusted_types)
        sample = holdout.take(range(min(ROUND_TRIP_ROWS, len(holdout))))
        same = np.allclose(scored.matrix(scored.raw(model, sample)), scored.matrix(scored.raw(fitted, sample)))
        round_trip = Gate("round_trip", bool(same), detail="" if same else "the reloaded model answers differently")
    except artifacts.ArtefactError as exc:
        round_trip = Gate("round_trip", False, detail=exc.message)
    if not round_trip.passed:
        report = finish(Decision.REJECTED, version=None, gates=(round_trip,), **common)
        alert(report)
        raise GatesFailed(report)

    stage("evaluating on %d holdout rows against %s", len(holdout), current.version if current else "no current model")
    candidate_raw = scored.raw(model)
    baseline, current_raw = _baseline(definition, store, current, scored)
    truth, predicted = scored.truth(), scored.matrix(candidate_raw)  # after both models named their classes
    current_predictions = scored.matrix(current_raw) if current_raw is not None else None
    metrics = evaluate(definition.evaluation.metrics, truth, predicted)
    if baseline is not None and current_predictions is not None:
        baseline = Baseline(baseline.version, evaluate(definition.evaluation.metrics, truth, current_predictions),
                            baseline.basis)
    gates = (round_trip, *threshold_gates(definition, metrics),
             *relative_gates(definition, metrics, baseline, truth=truth, candidate=predicted,
                             current=current_predictions),
             shift_gate(definition, predicted, current_predictions), *golden_gates(definition, model))
    common.update(metrics=metrics, baseline=baseline, gates=gates)
    if not all(g.passed for g in gates):
        report = finish(Decision.REJECTED, version=None, **common)
        log.warning("%s", report.summary())  # warning: the alert itself goes out once, fingerprinted
        alert(report)
        raise GatesFailed(report)

    stage("publishing to s3://%s/%s%s/", store.bucket, store.prefix, name)
    version = store.publish(name, artefact, {
        "metrics": metrics, "reference_stats": reference_statistics(dataset, bins=definition.checks.bins,
                                                                    top_categories=definition.checks.top_categories),
        "training_rows": len(train), "holdout_rows": len(holdout), "code_version": code,
        "definition": {"file": definition.filename, "sha256": definition.sha256},
        "data": {"load": asdict(load), "sampling": sampling.to_dict()},
        "checks": checks.to_dict(), "gates": [asdict(g) for g in gates],
        "baseline": {"version": baseline.version, "basis": baseline.basis, "metrics": dict(baseline.metrics)}
        if baseline else None,
        "libraries": library_versions(), "trusted_types": list(definition.trusted_types),
    })
    report = finish(Decision.PUBLISHED, version=version, **common)
    log.info("%s", report.summary())
    return report


def _current(store: ModelStore, name: str) -> tuple[Any, str | None]:
    """The live version's metadata, or None with the reason when there is none or it cannot be read (a pointer
    to a missing version, an unreadable pointer): a broken live model must not prevent its replacement."""
    try:
        return store.current_metadata(name), None
    except StoreError as exc:
        log.error("the live %s cannot be read (%s): training as if there were none, to replace it", name, exc)
        return None, f"{type(exc).__name__}: {exc}"


def _baseline(definition: ModelDefinition, store: ModelStore, current: Any,
              scored: Scored) -> tuple[Baseline | None, Any]:
    """The current model's answers on the same holdout; its recorded metrics when it cannot be run."""
    if current is None:
        return None, None
    try:
        loaded = store.load(definition.name, current.version, trusted_types=definition.trusted_types)
        return Baseline(current.version, {}, "same holdout"), scored.raw(loaded.model)
    except Exception as exc:  # noqa: BLE001 - whatever stops it (StoreError, a library change): use what was recorded
        log.warning("current model %s could not be run on the holdout (%s); comparing with its recorded metrics",
                    current.version, exc)
        return Baseline(current.version, dict(current.metrics), "recorded metrics", f"{type(exc).__name__}: {exc}"), \
            None
