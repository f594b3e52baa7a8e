"""The record of one training run: what was read, kept and checked, how the candidate was judged, the decision.

These are plain values with no behaviour beyond describing themselves, kept apart from the code that
produces them for two reasons. Every consumer of a run's outcome reads them — the batch entry point (one
JSON line), the Sentry report, the metadata published with a version, and the exceptions that carry a
refused run (:class:`~handlers.ml.errors.TrainingRejected`) — and none of those should have to import the
training pipeline (numpy, scikit-learn, S3 reads) to do so. And the exceptions module naming the report
while the training module raises those exceptions made an import cycle; a leaf module of types has none.

* :class:`LoadReport` and :class:`SampleReport` — what :mod:`handlers.ml.data` read and kept;
* :class:`CheckResult` and :class:`DataCheckReport` — what :mod:`handlers.ml.datachecks` found;
* :class:`Gate` and :class:`Baseline` — how :mod:`handlers.ml.training` judged the candidate, and against what;
* :class:`TrainingReport` — all of it, with the :class:`Decision`.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping


# -- reading the events ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadReport:
    """What reading the processed events found."""

    event_type: str
    first_day: str
    last_day: str
    objects: int
    lines: int
    events: int  # distinct messageIds kept
    duplicates: int  # lines whose messageId was already read
    skipped: int  # lines that were not JSON objects of the event type (never expected; counted, not fatal)

    def describe(self) -> str:
        return (f"{self.event_type} {self.first_day}..{self.last_day}: {self.objects} objects, {self.lines} lines, "
                f"{self.events} events, {self.duplicates} duplicates dropped, {self.skipped} lines skipped")


@dataclass(frozen=True)
class SampleReport:
    """The cap on training rows: how many there were and were kept, per stratum."""

    stratify_by: str
    cap: int
    seed: int
    available: int
    kept: int
    strata: Mapping[str, tuple[int, int]]  # stratum -> (available, kept)

    def describe(self) -> str:
        parts = ", ".join(f"{s} {k}/{a}" for s, (a, k) in sorted(self.strata.items()))
        return f"kept {self.kept} of {self.available} rows (cap {self.cap}, by {self.stratify_by}): {parts}"

    def to_dict(self) -> dict[str, Any]:
        return {"stratify_by": self.stratify_by, "cap": self.cap, "seed": self.seed, "available": self.available,
                "kept": self.kept, "strata": {s: {"available": a, "kept": k} for s, (a, k) in self.strata.items()}}



# -- the data checks -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    check: str  # min_rows | schema | null_rate | range | drift
    column: str | None
    passed: bool
    observed: float
    threshold: float
    detail: str = ""
    skipped: bool = False

    @property
    def key(self) -> str:
        return f"{self.check}:{self.column}" if self.column else self.check

    def describe(self) -> str:
        state = "skipped" if self.skipped else "ok" if self.passed else "FAILED"
        where = f" on {self.column}" if self.column else ""
        return (f"{self.check}{where}: {state} (observed {self.observed:.4g}, threshold {self.threshold:.4g})"
                + (f": {self.detail}" if self.detail else ""))


@dataclass(frozen=True)
class DataCheckReport:
    rows: int
    results: tuple[CheckResult, ...]

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "passed": self.passed, "results": [asdict(r) for r in self.results]}

    def describe(self) -> str:
        return "\n".join(r.describe() for r in self.results)



# -- judging the candidate, and the decision -------------------------------------------------------------------
class Decision(str, enum.Enum):
    PUBLISHED = "published"
    REJECTED = "rejected"  # trained, but a gate failed
    BLOCKED = "blocked"  # the data failed its checks: nothing was trained


@dataclass(frozen=True)
class Gate:
    """One pass/fail judgement of the candidate (``skipped`` gates pass: e.g. no current model to compare)."""

    name: str  # threshold:<metric> | relative:<metric> | prediction_shift | golden:<name> | round_trip
    passed: bool
    observed: float | None = None
    threshold: float | None = None
    detail: str = ""
    skipped: bool = False

    def describe(self) -> str:
        state = "skipped" if self.skipped else "ok" if self.passed else "FAILED"
        numbers = f" (observed {self.observed:.4g}, threshold {self.threshold:.4g})" \
            if self.observed is not None and self.threshold is not None else ""
        return f"{self.name}: {state}{numbers}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Baseline:
    """The model served when training started, and its metrics on this run's holdout (or as recorded)."""

    version: str
    metrics: Mapping[str, float]
    basis: str  # "same holdout" | "recorded metrics"
    detail: str = ""


@dataclass(frozen=True)
class TrainingReport:
    model: str
    decision: Decision
    version: str | None  # the published version, None unless published
    code_version: str
    started_at: str
    duration_seconds: float
    load: LoadReport | None
    sampling: SampleReport | None
    checks: DataCheckReport | None
    train_rows: int = 0
    holdout_rows: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    baseline: Baseline | None = None
    gates: tuple[Gate, ...] = ()
    notes: tuple[str, ...] = ()  # what the run had to work around (e.g. an unreadable live version)

    def failed_keys(self) -> list[str]:
        """Short names of what failed (``drift:category``, ``threshold:mape``): the alert's fingerprint."""
        checks = [r.key for r in self.checks.failures] if self.checks else []
        return checks + [g.name for g in self.gates if not g.passed]

    def failures(self) -> list[str]:
        checks = [r.describe() for r in self.checks.failures] if self.checks else []
        return checks + [g.describe() for g in self.gates if not g.passed]

    def summary(self) -> str:
        head = f"{self.model}: {self.decision.value}"
        if self.version:
            head += f" as version {self.version}"
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items())
        body = [f"rows: train {self.train_rows}, holdout {self.holdout_rows}" + (f"; {metrics}" if metrics else "")]
        return "\n".join([head, *body, *self.notes, *self.failures()])

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "decision": self.decision.value, "version": self.version,
            "code_version": self.code_version, "started_at": self.started_at,
            "duration_seconds": round(self.duration_seconds, 3),
            "load": asdict(self.load) if self.load else None,
            "sampling": self.sampling.to_dict() if self.sampling else None,
            "checks": self.checks.to_dict() if self.checks else None,
            "rows": {"train": self.train_rows, "holdout": self.holdout_rows}, "metrics": dict(self.metrics),
            "baseline": {**asdict(self.baseline), "metrics": dict(self.baseline.metrics)} if self.baseline else None,
            "gates": [asdict(g) for g in self.gates], "failed": self.failed_keys(), "failures": self.failures(),
            "notes": list(self.notes),
        }

