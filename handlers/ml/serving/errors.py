"""Errors of the serving wrapper and the validator, as types that carry data.

Every error a route can meet is a :class:`ServingError` with an HTTP status and a stable ``code``; the app
turns each into the one JSON shape ``{"error": {"status", "code", "message", ...}}`` in one place
(:func:`handlers.ml.serving.app.create_app`). The validator reads ``code`` back to tell a broken candidate
(``model_unloadable``, ``prediction_failed``, ``unknown_version``) from a serving API it cannot judge with
(unreachable, misconfigured).

A configuration the app or the validator cannot run with is a :class:`handlers.core.config.ConfigError`
naming the environment variable, like every deployed function's.
"""
from __future__ import annotations

from typing import Any, Mapping


class ServingError(Exception):
    """A request the serving app cannot answer with a prediction; ``status`` and ``code`` say how."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        self.message, self.field, self.details = message, field, dict(details or {})
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(ServingError):
    """The request body breaks the endpoint's declared inputs; ``field`` and ``details.reason`` say where and why."""

    status, code = 400, "invalid_input"


class UnsupportedMediaType(ServingError):
    """A body that is not declared JSON (``Content-Type: application/json``): never guessed at."""

    status, code = 415, "unsupported_media_type"


class BodyTooLarge(ServingError):
    """A body over the configured limit: refused before it is read."""

    status, code = 413, "body_too_large"


class VersionPinningRefused(ServingError):
    """``X-Model-Version`` on a public route: users get the live version only; the validator pins versions on
    the internal route with a signed request."""

    status, code = 403, "version_pinning_not_public"


class ValidationAuthRequired(ServingError):
    """An internal route without a valid signature of the model store's validation key."""

    status, code = 401, "validation_auth_required"


class UnknownVersion(ServingError):
    """``X-Model-Version`` names a version the store does not hold."""

    status, code = 404, "unknown_version"


class ModelDisabled(ServingError):
    """The model's kill switch is on (the store's flag or the definition's environment variable)."""

    status, code = 503, "model_disabled"


class ModelStale(ServingError):
    """The process could not read the live pointer for longer than the configured bound: it does not know that
    what it holds is still live (it may have been rolled back), so it does not answer with it."""

    status, code = 503, "model_stale"


class ModelUnavailable(ServingError):
    """No version could be loaded yet (nothing published, or every load failed): nothing to answer with."""

    status, code = 503, "model_unavailable"


class ModelUnloadable(ServingError):
    """The asked version exists but cannot be loaded (checksum mismatch, untrusted types, unreadable)."""

    status, code = 500, "model_unloadable"


class PredictionFailed(ServingError):
    """The model's predict raised, or returned something the endpoint does not declare or cannot serve."""

    status, code = 500, "prediction_failed"


class ServingUnreachable(Exception):
    """The validator could not get an HTTP answer from the serving API (connection refused, timeout, DNS)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"{url}: {reason}")


class ValidationInconclusive(Exception):
    """The validator could not judge the candidate; raised by the Lambda so the invocation is retried."""

    def __init__(self, report: Any) -> None:
        self.report = report
        super().__init__(report.summary())
