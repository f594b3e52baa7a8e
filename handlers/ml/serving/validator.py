"""The validator: a candidate goes live only after answering its golden requests on the serving fleet; a broken
live pointer is rolled back.

Two kinds of store writes reach it (EventBridge "Object Created" on AWS; locally the models bucket's S3
notifications, fanned out through SNS):

``<prefix><name>/candidate.json`` — training published a candidate. The validator

1. ignores a candidate already decided (validated and live, or rejected);
2. asks the serving fleet each golden request *for that version*, on the internal route
   ``/internal/validate/<model>/<version><endpoint>``, signed with the model store's validation key
   (:mod:`handlers.ml.serving.auth`) — users cannot reach it, and the fleet answers from exactly the candidate,
   loaded with the same checksum and allow-list checks as a reload, with no race and no sleep; the answer's
   ``version`` is checked;
3. judges each answer (:mod:`handlers.ml.serving.judging`): the definition's expectations and guard rails;
4. all pass → ``mark_validated``, then ``promote`` (the live pointer moves; every serving process follows within
   its poll interval) — unless a newer candidate was published meanwhile (then it is only marked: the newer one
   is next). Any judged failure → ``reject`` (never live) and one Sentry alert; users never saw it.

``<prefix><name>/current.json`` — the live pointer moved (a promotion, a rollback, or a hand). The validator
checks it (:meth:`handlers.ml.store.ModelStore.live_problem`): readable, naming a validated version whose
artefact is intact. If not, it rolls back to the last validated version by the pointer log's order and alerts.

When the fleet cannot be asked (unreachable, its own 5xx, the model switched off, a refused signature) the
result is *inconclusive*: a warning, nothing decided, and the Lambda raises
:class:`~handlers.ml.serving.errors.ValidationInconclusive` so the asynchronous invocation is retried (then its
on-failure destination). A model whose definition does not load is skipped (the definition is reported once per
cold start) — the others are validated as usual.

The core (:func:`validate`, :func:`check_live`, :func:`handle_event`) takes the definitions, the store and a
:class:`~handlers.ml.serving.client.ServingClient` per model; :func:`handler` builds them from the environment:

* ``MODELS_BUCKET`` (required), ``MODELS_PREFIX`` (default ``models/``);
* ``SERVING_URL`` (required) — the serving fleet; ``SERVING_URLS`` — JSON ``{"<model>": "<url>"}`` for models
  served elsewhere (a deployment of their own);
* ``SERVING_IAM_AUTH`` (``1`` on AWS: SigV4 for API Gateway), ``SERVING_IAM_SERVICE`` (default ``execute-api``),
  ``AWS_REGION``; ``SERVING_TIMEOUT_SECONDS`` (default 10);
* ``MODEL_DEFINITIONS_DIR`` — default ``models/`` at the root of the zip (beside ``handlers/``);
* ``STAGE``, ``SENTRY_DSN`` / ``SENTRY_DSN_SECRET_ARN`` / ``SENTRY_LOCAL_PATH``.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote_plus

import orjson

from handlers.core.config import PACKAGE_ROOT, ConfigError
from handlers.ml.definition import load_definitions_safely
from handlers.ml.definition_types import GoldenRequest, ModelDefinition
from handlers.ml.errors import NoValidatedVersion, StoreError
from handlers.ml.serving.alerts import report_definition_problem, report_live_problem, report_validation_problem
from handlers.ml.serving.client import HttpClient, ServingClient, SigV4Signer
from handlers.ml.serving.config import truthy
from handlers.ml.serving.errors import ServingUnreachable, ValidationInconclusive
from handlers.ml.serving.judging import CANDIDATE_FAULTS, GoldenResult, Outcome, ValidationReport, judge
from handlers.ml.store import REJECTED, VALIDATED

__all__ = ["CANDIDATE_FAULTS", "Outcome", "ValidationReport", "judge", "validate", "check_live", "handle_event",
           "parse_event", "PointerMoved", "ValidatorSettings", "handler", "reset"]

log = logging.getLogger(__name__)

INTERNAL_PREFIX = "/internal/validate"
VALIDATOR_REASON = "validator"
CANDIDATE, LIVE = "candidate", "current"


def internal_path(model: str, version: str, endpoint: str) -> str:
    return f"{INTERNAL_PREFIX}/{model}/{version}{endpoint}"


def ask(definition: ModelDefinition, client: ServingClient, golden: GoldenRequest, version: str,
        key: bytes) -> GoldenResult:
    endpoint = definition.endpoint(golden.endpoint)
    try:
        answer = client.request(endpoint.method, internal_path(definition.name, version, golden.endpoint),
                                dict(golden.input), validation_key=key)
    except ServingUnreachable as exc:
        return GoldenResult(golden.name, golden.endpoint, passed=False, judged=False, status=None,
                            problems=(f"no answer: {exc}",))
    return judge(definition, golden, version, answer.status, answer.body)


def _replace(report: ValidationReport, **changes: Any) -> ValidationReport:
    return ValidationReport(**{**report.__dict__, **changes})


def _with_alert(report: ValidationReport, alert: Callable[[ValidationReport], bool]) -> ValidationReport:
    return _replace(report, alerted=bool(alert(report)))


# -- a candidate ---------------------------------------------------------------------------------------------------
def validate(definition: ModelDefinition, store: Any, client: ServingClient, version: str, *,
             alert: Callable[[ValidationReport], bool] = report_validation_problem) -> ValidationReport:
    """Ask every golden request of ``version`` on the fleet; validate and promote, or reject and alert."""
    name = definition.name
    key = store.validation_key(create=True)
    results = tuple(ask(definition, client, golden, version, key) for golden in definition.golden_requests)
    if any(not r.judged for r in results):
        report = ValidationReport(name, version, Outcome.INCONCLUSIVE, results,
                                  detail="the serving fleet could not be asked about this version; nothing decided")
        log.warning("%s", report.summary())
        return _with_alert(report, alert)
    if all(r.passed for r in results):
        store.mark_validated(name, version, note=f"{len(results)} golden requests answered on the fleet")
        return _promote(store, ValidationReport(name, version, Outcome.VALIDATED, results))
    failed = [r.name for r in results if not r.passed]
    store.reject(name, version, reason=f"{VALIDATOR_REASON}: golden requests {', '.join(failed)} failed")
    report = ValidationReport(name, version, Outcome.REJECTED, results,
                              detail="never served to users; the live version is unchanged")
    log.error("%s", report.summary())
    return _with_alert(report, alert)


def _promote(store: Any, report: ValidationReport) -> ValidationReport:
    name, version = report.model, report.version
    candidate = store.candidate(name)
    if candidate is not None and candidate.version != version:
        report = _replace(report, detail=f"validated, not made live: {candidate.version} was published since")
    else:
        store.promote(name, version, reason=f"{VALIDATOR_REASON}: {len(report.results)} golden requests passed")
        report = _replace(report, detail="live")
    log.info("%s", report.summary())
    return report


def handle_candidate(definition: ModelDefinition, store: Any, client: ServingClient, *,
                     alert: Callable[[ValidationReport], bool] = report_validation_problem) -> ValidationReport:
    name = definition.name
    candidate = store.candidate(name)  # what it names now: a later publish supersedes this event's
    if candidate is None:
        return ValidationReport(name, None, Outcome.SKIPPED, detail="no candidate")
    verdict = store.verdict(name, candidate.version)
    if verdict == REJECTED:
        return ValidationReport(name, candidate.version, Outcome.SKIPPED, detail="rejected before")
    if verdict == VALIDATED:
        live = store.current(name)
        if live is not None and live.version == candidate.version:
            return ValidationReport(name, candidate.version, Outcome.SKIPPED, detail="already validated and live")
        return _promote(store, ValidationReport(name, candidate.version, Outcome.VALIDATED,
                                                detail="validated before, not yet live"))
    return validate(definition, store, client, candidate.version, alert=alert)


# -- the live pointer ----------------------------------------------------------------------------------------------
def check_live(name: str, store: Any, *, alert: Callable[[str, str, str | None], bool] = report_live_problem
               ) -> ValidationReport:
    """A write of the live pointer: if it is unreadable or names a missing, unvalidated or altered version, roll
    back to the last validated version (by the pointer log's order) and alert."""
    problem = store.live_problem(name)
    if problem is None:
        return ValidationReport(name, store.current_version(name), Outcome.LIVE_OK)
    log.error("model %s: the live pointer is broken: %s", name, problem)
    try:
        target = store.rollback(name, reason=f"{VALIDATOR_REASON}: {problem}")
        report = ValidationReport(name, None, Outcome.ROLLED_BACK, rolled_back_to=target, detail=problem)
    except NoValidatedVersion as exc:
        report = ValidationReport(name, None, Outcome.BROKEN_NO_ROLLBACK, detail=f"{problem}; {exc.message}")
    except StoreError as exc:
        report = ValidationReport(name, None, Outcome.BROKEN_NO_ROLLBACK, detail=f"{problem}; rollback failed: {exc}")
    return _replace(report, alerted=bool(alert(name, problem, report.rolled_back_to)))


# -- the store event -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointerMoved:
    """An S3 "Object Created" event for ``<prefix><model>/candidate.json`` or ``…/current.json``."""

    bucket: str
    key: str
    model: str
    kind: str = CANDIDATE  # candidate | current


def parse_event(event: Mapping[str, Any], *, bucket: str, prefix: str) -> PointerMoved | str:
    """The pointer write this EventBridge event reports, or why it is not one (a string)."""
    if event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        return f"not an S3 Object Created event ({event.get('source')!r}, {event.get('detail-type')!r})"
    detail = event.get("detail") or {}
    event_bucket = (detail.get("bucket") or {}).get("name")
    key = unquote_plus((detail.get("object") or {}).get("key") or "")  # S3 notifications URL-encode keys
    if event_bucket != bucket:
        return f"bucket {event_bucket!r} is not the models bucket {bucket!r}"
    match = re.fullmatch(re.escape(prefix) + r"([a-z][a-z0-9_]{1,62})/(candidate|current)\.json", key or "")
    if match is None:
        return f"key {key!r} is not a model pointer ({prefix}<name>/candidate.json or current.json)"
    return PointerMoved(event_bucket, key, match.group(1), match.group(2))


def handle_event(event: Mapping[str, Any], *, definitions: Mapping[str, ModelDefinition], store: Any,
                 client: ServingClient | Mapping[str, ServingClient],
                 broken: Mapping[str, Exception] | None = None,
                 alert: Callable[[ValidationReport], bool] = report_validation_problem) -> ValidationReport:
    """Decide what a pointer event asks for and do it (see the module doc for what is ignored)."""
    moved = parse_event(event, bucket=store.bucket, prefix=store.prefix)
    if isinstance(moved, str):
        return ValidationReport("(none)", None, Outcome.SKIPPED, detail=moved)
    if moved.kind == LIVE:
        return check_live(moved.model, store)
    definition = definitions.get(moved.model)
    if definition is None:
        why = next((f"its definition {file} does not load: {error}" for file, error in (broken or {}).items()
                    if Path(file).stem == moved.model), f"no definition models/{moved.model}.yaml here")
        log.error("candidate of %s: not validated: %s", moved.model, why)
        return ValidationReport(moved.model, None, Outcome.SKIPPED, detail=why)
    chosen = client.get(moved.model) if isinstance(client, Mapping) else client
    if chosen is None:
        return ValidationReport(moved.model, None, Outcome.SKIPPED, detail="no serving URL for this model")
    return handle_candidate(definition, store, chosen, alert=alert)


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
    serving_urls: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "ValidatorSettings":
        for required in ("MODELS_BUCKET", "SERVING_URL"):
            if not environ.get(required, "").strip():
                raise ConfigError(required, "required")
        url = _url(environ["SERVING_URL"].strip(), "SERVING_URL")
        urls: dict[str, str] = {}
        if environ.get("SERVING_URLS", "").strip():
            try:
                raw = orjson.loads(environ["SERVING_URLS"])
            except orjson.JSONDecodeError:
                raise ConfigError("SERVING_URLS", 'not JSON: {"<model>": "https://…"}') from None
            if not isinstance(raw, dict):
                raise ConfigError("SERVING_URLS", 'a JSON object {"<model>": "https://…"}')
            urls = {str(model): _url(str(value), f"SERVING_URLS.{model}") for model, value in raw.items()}
        try:
            timeout = float(environ.get("SERVING_TIMEOUT_SECONDS", "10"))
        except ValueError:
            raise ConfigError("SERVING_TIMEOUT_SECONDS", "not a number of seconds") from None
        prefix = environ.get("MODELS_PREFIX", "models/").strip() or "models/"
        return cls(bucket=environ["MODELS_BUCKET"].strip(), prefix=prefix if prefix.endswith("/") else prefix + "/",
                   serving_url=url, iam_auth=truthy(environ.get("SERVING_IAM_AUTH"), "SERVING_IAM_AUTH"),
                   iam_service=environ.get("SERVING_IAM_SERVICE", "execute-api").strip() or "execute-api",
                   region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "eu-west-1",
                   timeout=timeout, stage=environ.get("STAGE", "local"), serving_urls=urls,
                   definitions_dir=Path(environ.get("MODEL_DEFINITIONS_DIR") or PACKAGE_ROOT / "models"))

    def client(self, model: str | None = None) -> HttpClient:
        signer = SigV4Signer(self.region, service=self.iam_service) if self.iam_auth else None
        return HttpClient(self.serving_urls.get(model or "", self.serving_url), timeout=self.timeout, signer=signer)

    def clients(self, models: Any) -> dict[str, HttpClient]:
        return {model: self.client(model) for model in models}


def _url(value: str, name: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(name, f"{value!r} is not an http(s) URL")
    return value


_cold: dict[str, Any] = {}


def _dependencies() -> dict[str, Any]:
    """Built once per Lambda container: settings, Sentry, definitions (entry points not imported), store, clients.
    A definition that does not load is reported once here; events for that model are skipped."""
    if not _cold:
        from handlers.core.alerts import init_sentry
        from handlers.ml.store import ModelStore

        settings = ValidatorSettings.from_environ()
        init_sentry(settings.stage)
        definitions, broken = load_definitions_safely(settings.definitions_dir, resolve=False)
        for filename, error in broken.items():
            report_definition_problem(filename, error, where="the validator")
        _cold.update(definitions=definitions, broken=broken, store=ModelStore(settings.bucket, prefix=settings.prefix),
                     client=settings.clients(definitions))
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

