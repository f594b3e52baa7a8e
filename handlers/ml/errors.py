"""Errors of the machine-learning system, as types that carry data.

Three families:

* input — :class:`InvalidModelInput`: an input the model's endpoint refuses (its declared inputs say no),
  whoever asks: the serving app answers it as its HTTP 400 :class:`~handlers.ml.serving.errors.InvalidInput`,
  a golden request that meets it fails the definition at load or the candidate before publishing;
* the model store — :class:`StoreError` and its kinds; a caller that only wants "could not get a model"
  catches the base class, one that must tell a tampered artefact from a missing one catches the kind;
* training — :class:`TrainingRejected` and its two kinds carry the whole :class:`TrainingReport`, so whoever
  catches one (the batch entry point, a test, an alert) has every number that led to the decision.

A broken model definition raises :class:`handlers.schema.errors.DefinitionError` (the one error of every YAML
definition: event types, metrics, models), and a misconfigured job or service
:class:`handlers.core.config.ConfigError`; both are imported from where they live.
"""
from __future__ import annotations

from handlers.ml.report import TrainingReport

__all__ = ["InvalidModelInput", "StoreError", "ModelNotFound", "NoCurrentModel", "ChecksumMismatch", "UntrustedTypes",
           "InvalidKillSwitch", "InvalidPointer", "NotValidated", "NoValidatedVersion",
           "TrainingRejected", "DataChecksFailed", "GatesFailed",
           "TrainingDataError"]


class InvalidModelInput(Exception):
    """An input the model's endpoint refuses: names the field, a stable reason code (the tracking ``Reason``
    values: ``invalid_type``, ``unknown_property``, ...) and why."""

    def __init__(self, field: str | None, reason: str, message: str) -> None:
        self.field, self.reason, self.message = field, reason, message
        super().__init__(f"{field}: [{reason}] {message}" if field else f"[{reason}] {message}")


class StoreError(Exception):
    """The model store could not do what was asked (an S3 error, a missing or unusable object)."""

    def __init__(self, model: str, message: str, *, key: str | None = None) -> None:
        self.model, self.key, self.message = model, key, message
        super().__init__(f"{model}: {message}" + (f" (s3 key {key})" if key else ""))


class ModelNotFound(StoreError):
    """The version (or one of its objects) does not exist in the store."""

    def __init__(self, model: str, version: str, key: str | None = None) -> None:
        self.version = version
        super().__init__(model, f"version {version} not found", key=key)


class NoCurrentModel(StoreError):
    """No version has been published for this model yet (there is no pointer)."""

    def __init__(self, model: str, key: str | None = None) -> None:
        super().__init__(model, "no live version: nothing has been validated and promoted yet", key=key)


class ChecksumMismatch(StoreError):
    """The artefact's bytes do not hash to the recorded sha256: it was changed or corrupted. Never loaded."""

    def __init__(self, model: str, version: str, expected: str, actual: str, key: str | None = None) -> None:
        self.version, self.expected, self.actual = version, expected, actual
        super().__init__(model, f"version {version}: artefact sha256 {actual} does not match the recorded "
                                f"{expected}; refusing to deserialise it", key=key)


class UntrustedTypes(StoreError):
    """The artefact would instantiate types outside the allow-list. Never loaded."""

    def __init__(self, model: str, version: str, types: tuple[str, ...]) -> None:
        self.version, self.types = version, types
        super().__init__(model, f"version {version}: the artefact holds types outside the trusted list: "
                                f"{', '.join(types)}")


class InvalidKillSwitch(StoreError):
    """The model's ``kill_switch.json`` is not in its format (:class:`handlers.ml.store_types.KillSwitch`): refused,
    and every reader treats the model as switched off until an operator writes it again."""

    def __init__(self, model: str, key: str, problem: str) -> None:
        self.problem = problem
        super().__init__(model, f"the kill switch is malformed: {problem}; the model is treated as switched off "
                                f"until it is written again (letgo ml kill|revive)", key=key)


class InvalidPointer(StoreError):
    """``current.json`` or ``candidate.json`` is not a pointer (not JSON, a field missing or of the wrong type)."""

    def __init__(self, model: str, key: str, problem: str) -> None:
        self.problem = problem
        super().__init__(model, f"the pointer is unreadable: {problem}", key=key)


class NotValidated(StoreError):
    """The live pointer may only name a version the validator accepted (and nobody rejected since)."""

    def __init__(self, model: str, version: str, verdict: str, key: str | None = None) -> None:
        self.version, self.verdict = version, verdict
        super().__init__(model, f"version {version} is {verdict}: only validated versions go live", key=key)


class NoValidatedVersion(StoreError):
    """A rollback found no validated, intact version to go back to; ``tried`` says what was refused and why."""

    def __init__(self, model: str, current: str | None, tried: tuple[str, ...] = ()) -> None:
        self.current, self.tried = current, tried
        super().__init__(model, f"no validated version other than {current or '(none)'} to roll back to"
                                + (f" ({'; '.join(tried)})" if tried else ""))


class TrainingRejected(Exception):
    """Training ended without publishing; ``report`` says why (its ``decision`` and failed checks/gates)."""

    def __init__(self, report: TrainingReport) -> None:
        self.report = report
        super().__init__(report.summary())


class DataChecksFailed(TrainingRejected):
    """The training data failed its checks (schema, null rates, ranges, drift): training did not start."""


class GatesFailed(TrainingRejected):
    """The trained model failed a gate (absolute or relative metric threshold, golden request, round trip)."""


class TrainingDataError(Exception):
    """The processed events could not be read (an S3 error on a listing or an object)."""

    def __init__(self, bucket: str, key: str, message: str) -> None:
        self.bucket, self.key, self.message = bucket, key, message
        super().__init__(f"s3://{bucket}/{key}: {message}")
