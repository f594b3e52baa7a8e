"""What the validator concludes, as values, and how one live answer is judged (pure functions, no I/O).

A candidate is only blamed for what is its own: a failed expectation, an answer the guard rails had to clamp or
withhold, or the serving app's error codes ``model_unloadable`` (tampered bytes, untrusted types),
``prediction_failed`` and ``unknown_version``. Anything else — no answer at all, the serving app's own 5xx, the
model switched off (``model_disabled``), a signature the fleet refused (``validation_auth_required``), an answer
from another version — says nothing about the candidate: the result is *not judged*, and a validation with an
unjudged answer is inconclusive (nothing decided, retried).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Mapping

from handlers.ml.definition_types import GoldenRequest, ModelDefinition

# Error codes of the serving app that are the candidate's own fault (see handlers.ml.serving.errors).
CANDIDATE_FAULTS = frozenset({"model_unloadable", "prediction_failed", "unknown_version"})


class Outcome(str, enum.Enum):
    VALIDATED = "validated"  # every golden request passed: marked validated and made live
    REJECTED = "rejected"  # a golden request failed: marked rejected, never live; the live version stays
    INCONCLUSIVE = "inconclusive"  # the serving fleet could not be asked: nothing decided, retried
    LIVE_OK = "live_ok"  # a write of the live pointer: it names a validated, intact version
    ROLLED_BACK = "rolled_back"  # the live pointer was broken: back to the last validated version
    BROKEN_NO_ROLLBACK = "broken_no_rollback"  # the live pointer is broken and nothing is left to roll back to
    SKIPPED = "skipped"  # not an event to act on (another key, already decided, a definition that did not load)


@dataclass(frozen=True)
class GoldenResult:
    """One golden request asked live: ``judged`` False means the answer says nothing about the candidate."""

    name: str
    endpoint: str
    passed: bool
    judged: bool
    status: int | None
    problems: tuple[str, ...] = ()
    answered_version: str | None = None
    prediction: Mapping[str, Any] | None = None

    def describe(self) -> str:
        state = "ok" if self.passed else "FAILED" if self.judged else "not judged"
        return f"{self.name} ({self.endpoint}, HTTP {self.status}): {state}" + (
            f": {'; '.join(self.problems)}" if self.problems else "")


@dataclass(frozen=True)
class ValidationReport:
    model: str
    version: str | None
    outcome: Outcome
    results: tuple[GoldenResult, ...] = ()
    rolled_back_to: str | None = None
    alerted: bool = False
    detail: str = ""

    def failures(self) -> list[str]:
        return [r.describe() for r in self.results if not r.passed]

    def headline(self) -> str:
        failed = [r.name for r in self.results if not r.passed]
        head = f"{self.model}: version {self.version} {self.outcome.value}"
        if failed:
            head += f" ({', '.join(failed)})"
        if self.rolled_back_to:
            head += f"; live pointer back to {self.rolled_back_to}"
        return head

    def summary(self) -> str:
        return "\n".join([self.headline(), *([self.detail] if self.detail else []), *self.failures()])

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "outcome": self.outcome.value,
                "rolled_back_to": self.rolled_back_to, "alerted": self.alerted, "detail": self.detail,
                "results": [{"name": r.name, "endpoint": r.endpoint, "passed": r.passed, "judged": r.judged,
                             "status": r.status, "problems": list(r.problems),
                             "answered_version": r.answered_version,
                             "prediction": dict(r.prediction) if r.prediction is not None else None}
                            for r in self.results]}


def judge(definition: ModelDefinition, golden: GoldenRequest, version: str, status: int | None,
          body: Any) -> GoldenResult:
    """What one answer of the serving fleet says about ``version``."""
    base = dict(name=golden.name, endpoint=golden.endpoint, status=status)
    if status is None:
        return GoldenResult(**base, passed=False, judged=False, problems=("no answer from the serving API",))
    if status == 200:
        if not isinstance(body, Mapping) or not isinstance(body.get("prediction"), Mapping):
            return GoldenResult(**base, passed=False, judged=False,
                                problems=("HTTP 200 without a prediction: not the serving wrapper's answer",))
        answered = body.get("version")
        if answered != version:
            return GoldenResult(**base, passed=False, judged=False, answered_version=answered,
                                problems=(f"answered by version {answered}, not {version}: not the internal route?",))
        prediction = body["prediction"]
        problems = list(golden.problems(prediction))
        rail = body.get("guard_rail") or {}
        if body.get("clamped"):
            raw = {definition.guard_rails.output_field: rail.get("raw")}
            problems.append(definition.guard_rails.output_problem(raw) or
                            f"{definition.guard_rails.output_field}: clamped by the output guard rail")
        if body.get("abstained"):
            problems.append(f"{definition.guard_rails.output_field}: withheld ({rail.get('abstained_because')})")
        return GoldenResult(**base, passed=not problems, judged=True, problems=tuple(dict.fromkeys(problems)),
                            answered_version=answered, prediction=dict(prediction))
    error = body.get("error") if isinstance(body, Mapping) else None
    code = error.get("code") if isinstance(error, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    problem = f"HTTP {status} [{code or 'no error code'}] {message or ''}".strip()
    return GoldenResult(**base, passed=False, judged=code in CANDIDATE_FAULTS, problems=(problem,))
