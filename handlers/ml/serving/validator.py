"""The validator: every new pointer is checked live with the golden requests; a failure alerts and rolls back.

Flow. The training job publishes a version (artefact, metadata, then ``<prefix><name>/current.json``). S3
sends EventBridge an "Object Created" event for the pointer; the rule invokes :func:`handler`, which

1. ignores events for other buckets and keys, pointer moves made by a rollback (their ``reason`` starts with
   ``rollback:`` — including the validator's own) and versions already validated;
2. asks the serving API to answer each of the model's golden requests *with that version*, by sending
   ``X-Model-Version: <version>``. Pinning, not waiting until ``/health`` reports the version, because the
   fleet reloads at its own pace (several instances, several workers each, canary users on another
   version): a pinned request is answered by exactly the candidate, loaded through the same checksum and
   allow-list checks as a reload, with no race and no sleep. The answer's ``version`` is checked, so a
   server that ignored the header cannot pass a candidate;
3. judges each answer with the definition's expectations (:class:`handlers.ml.definition_types.Expectation`) and
   the output guard rail (an answer the server had to clamp is a failure: the candidate answered outside
   what the model may answer);
4. all pass → ``store.mark_validated`` (the version becomes a rollback target). Any judged failure → the
   pointer is rolled back to the newest validated older version (``store.rollback``) if it still names the
   candidate, then one Sentry alert says what failed and where the pointer went. The serving fleet follows
   the pointer back at its next check.

A candidate is only blamed for what is its own: a failed expectation, or the server's error codes
``model_unloadable`` (tampered bytes, untrusted types), ``prediction_failed``, ``unknown_version``. When the
API cannot be asked at all (unreachable, 5xx of its own, version pinning disabled, an answer for another
version) the result is *inconclusive*: a warning alert, no marker, no rollback, and the Lambda raises
:class:`~handlers.ml.serving.errors.ValidationInconclusive` so the asynchronous invocation is retried (then
its on-failure destination). Rolling back because the API was down would punish the wrong thing.

The core (:func:`validate`, :func:`handle_event`) takes the definition(s), the store and a
:class:`~handlers.ml.serving.client.ServingClient`; :func:`handler` only builds those from the environment:

* ``MODELS_BUCKET`` (required), ``MODELS_PREFIX`` (default ``models/``);
* ``SERVING_URL`` (required) — base URL of the serving API;
* ``SERVING_IAM_AUTH`` (``1`` on AWS: sign with SigV4), ``SERVING_IAM_SERVICE`` (default ``execute-api``),
  ``AWS_REGION``; ``SERVING_TIMEOUT_SECONDS`` (default 10);
* ``MODEL_DEFINITIONS_DIR`` — default ``models/`` at the root of the zip (beside ``handlers/``);
* ``STAGE``, ``SENTRY_DSN`` / ``SENTRY_LOCAL_PATH``.
"""
from __future__ import annotations

import enum
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus
from typing import Any, Callable, Mapping

from handlers.core.config import PACKAGE_ROOT, ConfigError
from handlers.ml.definition import load_definitions
from handlers.ml.definition_types import GoldenRequest, ModelDefinition
from handlers.ml.errors import NoValidatedVersion, StoreError
from handlers.ml.serving.alerts import report_validation_problem
from handlers.ml.serving.client import HttpClient, ServingClient, SigV4Signer
from handlers.ml.serving.config import truthy
from handlers.ml.serving.errors import ServingUnreachable, ValidationInconclusive

log = logging.getLogger(__name__)

VERSION_HEADER = "X-Model-Version"
ROLLBACK_PREFIX = "rollback:"
VALIDATOR_REASON = "validator"
# Error codes of the serving app that are the candidate's own fault (see handlers.ml.serving.errors).
CANDIDATE_FAULTS = frozenset({"model_unloadable", "prediction_failed", "unknown_version"})


class Outcome(str, enum.Enum):
    VALIDATED = "validated"  # every golden request passed: marker written
    ROLLED_BACK = "rolled_back"  # a golden request failed: pointer moved back to a validated version
    FAILED_NO_ROLLBACK = "failed_no_rollback"  # failed, and no validated version to go back to (or it is broken)
    FAILED_NOT_CURRENT = "failed_not_current"  # failed, but the pointer had already moved on: nothing to undo
    INCONCLUSIVE = "inconclusive"  # the serving API could not be asked: nothing decided, retried
    SKIPPED = "skipped"  # not a pointer move to validate


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
            head += f"; pointer back to {self.rolled_back_to}"
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


# -- judging one answer (pure) -------------------------------------------------------------------------------------
def judge(definition: ModelDefinition, golden: GoldenRequest, version: str, status: int | None,
          body: Any) -> GoldenResult:
    """What one answer of the serving API says about ``version``."""
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
                                problems=(f"answered by version {answered}, not {version}: is "
                                          f"{VERSION_HEADER} honoured?",))
        prediction = body["prediction"]
        problems = list(golden.problems(prediction))
        rail = body.get("guard_rail") or {}
        if body.get("clamped"):
            raw = {definition.guard_rails.output_field: rail.get("raw")}
            problems.append(definition.guard_rails.output_problem(raw) or
                            f"{definition.guard_rails.output_field}: clamped by the output guard rail")
        return GoldenResult(**base, passed=not problems, judged=True, problems=tuple(problems),
                            answered_version=answered, prediction=dict(prediction))
    error = body.get("error") if isinstance(body, Mapping) else None
    code = error.get("code") if isinstance(error, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    problem = f"HTTP {status} [{code or 'no error code'}] {message or ''}".strip()
    return GoldenResult(**base, passed=False, judged=code in CANDIDATE_FAULTS, problems=(problem,))


def ask(definition: ModelDefinition, client: ServingClient, golden: GoldenRequest, version: str) -> GoldenResult:
    endpoint = definition.endpoint(golden.endpoint)
    try:
        answer = client.request(endpoint.method, golden.endpoint, dict(golden.input),
                                headers={VERSION_HEADER: version})
    except ServingUnreachable as exc:
        return GoldenResult(golden.name, golden.endpoint, passed=False, judged=False, status=None,
                            problems=(f"no answer: {exc}",))
    return judge(definition, golden, version, answer.status, answer.body)


# -- the decision --------------------------------------------------------------------------------------------------
def validate(definition: ModelDefinition, store: Any, client: ServingClient, version: str, *,
             alert: Callable[[ValidationReport], bool] = report_validation_problem) -> ValidationReport:
    """Ask every golden request of ``version`` live; mark it validated, or alert and roll back (see module doc)."""
    name = definition.name
    results = tuple(ask(definition, client, golden, version) for golden in definition.golden_requests)
    if any(not r.judged for r in results):
        report = ValidationReport(name, version, Outcome.INCONCLUSIVE, results,
                                  detail="the serving API could not be asked about this version; nothing decided")
        log.warning("%s", report.summary())
        return _with_alert(report, alert)
    if all(r.passed for r in results):
        store.mark_validated(name, version, note=f"{len(results)} golden requests answered live")
        report = ValidationReport(name, version, Outcome.VALIDATED, results)
        log.info("%s", report.summary())
        return report
    failed = [r.name for r in results if not r.passed]
    report = _roll_back(store, ValidationReport(name, version, Outcome.FAILED_NO_ROLLBACK, results), failed)
    log.error("%s", report.summary())
    return _with_alert(report, alert)


def _roll_back(store: Any, report: ValidationReport, failed: list[str]) -> ValidationReport:
    name, version = report.model, report.version
    try:
        pointer = store.current(name)
        if pointer is None or pointer.version != version:
            return _replace(report, outcome=Outcome.FAILED_NOT_CURRENT,
                            detail=f"the pointer names {pointer.version if pointer else 'nothing'} now: not rolled "
                                   f"back")
        target = store.rollback(name, reason=f"{VALIDATOR_REASON}: {version} failed golden requests "
                                             f"{', '.join(failed)}")
        return _replace(report, outcome=Outcome.ROLLED_BACK, rolled_back_to=target)
    except NoValidatedVersion as exc:
        return _replace(report, detail=f"cannot roll back: {exc.message}; the failing version is still served")
    except StoreError as exc:
        return _replace(report, detail=f"rollback failed: {exc}; the failing version is still served")


def _replace(report: ValidationReport, **changes: Any) -> ValidationReport:
    return ValidationReport(**{**report.__dict__, **changes})


def _with_alert(report: ValidationReport, alert: Callable[[ValidationReport], bool]) -> ValidationReport:
    return _replace(report, alerted=bool(alert(report)))


# -- the pointer event ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointerMoved:
    """An S3 "Object Created" event for ``<prefix><model>/current.json`` in the models bucket."""

    bucket: str
    key: str
    model: str


def parse_event(event: Mapping[str, Any], *, bucket: str, prefix: str) -> PointerMoved | str:
    """The pointer move this EventBridge event reports, or why it is not one (a string)."""
    if event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        return f"not an S3 Object Created event ({event.get('source')!r}, {event.get('detail-type')!r})"
    detail = event.get("detail") or {}
    event_bucket = (detail.get("bucket") or {}).get("name")
    key = unquote_plus((detail.get("object") or {}).get("key") or "")  # S3 notifications URL-encode keys
    if event_bucket != bucket:
        return f"bucket {event_bucket!r} is not the models bucket {bucket!r}"
    match = re.fullmatch(re.escape(prefix) + r"([a-z][a-z0-9_]{1,62})/current\.json", key or "")
    if match is None:
        return f"key {key!r} is not a model pointer ({prefix}<name>/current.json)"
    return PointerMoved(event_bucket, key, match.group(1))


def handle_event(event: Mapping[str, Any], *, definitions: Mapping[str, ModelDefinition], store: Any,
                 client: ServingClient, alert: Callable[[ValidationReport], bool] = report_validation_problem
                 ) -> ValidationReport:
    """Decide what a pointer event asks for and do it (see the module doc for what is ignored)."""
    moved = parse_event(event, bucket=store.bucket, prefix=store.prefix)
    if isinstance(moved, str):
        return ValidationReport("(none)", None, Outcome.SKIPPED, detail=moved)
    definition = definitions.get(moved.model)
    if definition is None:
        log.error("pointer of %s moved, but no definition of it ships with the validator", moved.model)
        return ValidationReport(moved.model, None, Outcome.SKIPPED,
                                detail=f"no definition models/{moved.model}.yaml in the validator")
    pointer = store.current(moved.model)  # what it names now: a later move supersedes this event's
    if pointer is None:
        return ValidationReport(moved.model, None, Outcome.SKIPPED, detail="the pointer is gone")
    if pointer.reason.startswith(ROLLBACK_PREFIX):
        return ValidationReport(moved.model, pointer.version, Outcome.SKIPPED,
                                detail=f"the pointer was moved by a rollback ({pointer.reason})")
    if pointer.version in store.validated_versions(moved.model):
        return ValidationReport(moved.model, pointer.version, Outcome.SKIPPED, detail="already validated")
    return validate(definition, store, client, pointer.version, alert=alert)


# -- the Lambda ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ValidatorSettings:
    bucket: str
    prefix: str
    serving_url: str
    iam_auth: bool
    iam_service: str
    region: str
    timeout: float
    definitions_dir: Path
    stage: str = "local"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "ValidatorSettings":
        for required in ("MODELS_BUCKET", "SERVING_URL"):
            if not environ.get(required, "").strip():
                raise ConfigError(required, "required")
        url = environ["SERVING_URL"].strip()
        if not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError("SERVING_URL", f"{url!r} is not an http(s) URL")
        try:
            timeout = float(environ.get("SERVING_TIMEOUT_SECONDS", "10"))
        except ValueError:
            raise ConfigError("SERVING_TIMEOUT_SECONDS", "not a number of seconds") from None
        prefix = environ.get("MODELS_PREFIX", "models/").strip() or "models/"
        return cls(bucket=environ["MODELS_BUCKET"].strip(), prefix=prefix if prefix.endswith("/") else prefix + "/",
                   serving_url=url, iam_auth=truthy(environ.get("SERVING_IAM_AUTH"), "SERVING_IAM_AUTH"),
                   iam_service=environ.get("SERVING_IAM_SERVICE", "execute-api").strip() or "execute-api",
                   region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "eu-west-1",
                   timeout=timeout, stage=environ.get("STAGE", "local"),
                   definitions_dir=Path(environ.get("MODEL_DEFINITIONS_DIR") or PACKAGE_ROOT / "models"))

    def client(self) -> HttpClient:
        signer = SigV4Signer(self.region, service=self.iam_service) if self.iam_auth else None
        return HttpClient(self.serving_url, timeout=self.timeout, signer=signer)


_cold: dict[str, Any] = {}


def _dependencies() -> dict[str, Any]:
    """Built once per Lambda container: settings, Sentry, definitions (entry points not imported), store, client."""
    if not _cold:
        from handlers.core.alerts import init_sentry
        from handlers.ml.store import ModelStore

        settings = ValidatorSettings.from_environ()
        init_sentry(settings.stage)
        _cold.update(definitions=load_definitions(settings.definitions_dir, resolve=False),
                     store=ModelStore(settings.bucket, prefix=settings.prefix), client=settings.client())
    return _cold


def reset() -> None:
    """Forget the cold-start state (tests and the local stage, after changing the environment)."""
    _cold.clear()


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """EventBridge → Lambda entry point; raises :class:`ValidationInconclusive` so the invocation is retried."""
    report = handle_event(event, **_dependencies())
    if report.outcome is Outcome.INCONCLUSIVE:
        raise ValidationInconclusive(report)
    return report.to_dict()
