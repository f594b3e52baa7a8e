"""The Flask serving wrapper: ``create_app(definitions, store, config=...)`` serves one or several declared models.

The routes come from the models' YAML, not from code: one route per ``serving.endpoints`` entry of every model
(its path and method), taking a JSON object (query parameters for GET), read strictly
(:mod:`handlers.ml.serving.inputs`) and checked by the endpoint's own compiled input checks. Beside them:

* ``GET /health`` — every model's state: the versions served and when they were loaded, kill switch, canary,
  the last pointer read and any problem, counters; the models this process could not serve (a broken YAML)
  with the reason; the change memory's state. 200 when every model that has a live version is loaded here
  (the kill switch on is still 200: the model is off on purpose), 503 otherwise — so a load balancer does not
  send traffic to an instance that cannot answer.
* ``GET /metrics`` — the counters alone, per model and variant. ``GET /openapi.json`` — the contract
  (:mod:`handlers.ml.serving.openapi`), generated from the same definitions.
* ``/internal/validate/<model>/<version>/<endpoint path>`` — the validator's requests for a version that is
  not live (a candidate): signed with the model store's validation key (:mod:`handlers.ml.serving.auth`),
  401 without a valid signature. Users cannot pin a version: ``X-Model-Version`` on a public route is a 403.

A prediction answers ``{"model", "version", "variant", "prediction": {<declared outputs>}, "clamped",
"change_limited", "abstained", "guard_rail"?}``; ``X-User-Id`` (configurable) keeps the canary sticky. Every
error — ours (:class:`~handlers.ml.serving.errors.ServingError`), Flask's (404, 405, 413) or an unexpected
exception — answers the one shape ``{"error": {"status", "code", "message", "field"?, "details"?}}``.

The core is :class:`~handlers.ml.serving.fleet.Fleet` (``app.extensions["ml_serving"]``): the first pointer read
of every model runs here, before the app is returned — a process starts with the live versions loaded (or with
the reason they are not in ``/health``) — and then each model's poll thread keeps up in the background.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from handlers.ml.definition_types import Endpoint, ModelDefinition
from handlers.ml.serving.auth import HEADER, AuthFailed
from handlers.ml.serving.config import VERSION_PATTERN, ServingConfig
from handlers.ml.serving.errors import (ServingError, UnknownVersion, ValidationAuthRequired,
                                        VersionPinningRefused)
from handlers.ml.serving.fleet import Fleet
from handlers.ml.serving.inputs import check_size, decode, strict_types
from handlers.ml.serving.openapi import document
from handlers.ml.serving.service import Answer, ModelService

log = logging.getLogger(__name__)

VERSION_HEADER = "X-Model-Version"
EXTENSION = "ml_serving"
INTERNAL_PREFIX = "/internal/validate"


def fleet() -> Fleet:
    return current_app.extensions[EXTENSION]


def error_response(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify(error={"status": status, "code": code, "message": message,
                          **{k: v for k, v in extra.items() if v is not None}}), status


def _inputs(service: ModelService, endpoint: Endpoint) -> dict[str, Any]:
    """The request's inputs, read strictly and cleaned by the endpoint's checks (400/413/415 otherwise)."""
    if endpoint.method == "GET":
        return service.validate(endpoint, request.args.to_dict())
    check_size(request.content_length, fleet().config.max_body_bytes)
    try:
        body = decode(endpoint.path, request.content_type, request.get_data(cache=True))
        strict_types(endpoint, body)
    except ServingError:
        service.counters.other("invalid_input")
        raise
    return service.validate(endpoint, body)


def _respond(answer: Answer) -> Response:
    response = jsonify(answer.to_dict())
    response.headers[VERSION_HEADER] = answer.version
    response.headers["X-Model-Variant"] = answer.variant
    return response


def _prediction_view(service: ModelService, endpoint: Endpoint) -> Any:
    def view() -> Any:
        if VERSION_HEADER in request.headers:
            service.counters.other("version_pinning_refused")
            raise VersionPinningRefused(f"{VERSION_HEADER} is not accepted: callers get the live, validated version "
                                        f"of {service.name}")
        cleaned = _inputs(service, endpoint)
        user_id = request.headers.get(service.config.user_id_header) or None
        return _respond(service.answer(endpoint, cleaned, user_id=user_id))

    view.__name__ = "predict_" + endpoint.path.strip("/").replace("/", "_").replace("-", "_").replace(".", "_")
    return view


def internal_validate(model: str, version: str, rest: str) -> Any:
    """The validator's request for ``version`` of ``model`` (signed; the kill switch applies)."""
    core = fleet()
    check_size(request.content_length, core.config.max_body_bytes)
    raw = request.get_data(cache=True)
    try:
        core.verifier.verify(request.headers.get(HEADER), request.method, request.path,
                             request.query_string.decode("latin-1"), raw)
    except AuthFailed as exc:
        raise ValidationAuthRequired(exc.reason) from None
    service = core.service(model)
    path = "/" + rest
    endpoint = next((e for e in service.definition.endpoints if e.path == path), None) if service else None
    if service is None or endpoint is None or endpoint.method != request.method:
        raise UnknownVersion(f"this process serves no {request.method} {path} of a model {model!r}",
                             details={"model": model, "endpoint": path})
    if not VERSION_PATTERN.match(version):
        raise UnknownVersion(f"{version!r} is not a version name", details={"version": version})
    return _respond(service.answer_pinned(endpoint, _inputs(service, endpoint), version))


def health() -> Any:
    body, status = fleet().health()
    return jsonify(body), status


def metrics() -> Any:
    return jsonify(fleet().metrics())


def openapi() -> Any:
    return jsonify(current_app.config["OPENAPI_DOCUMENT"])


def create_app(definitions: Mapping[str, ModelDefinition] | ModelDefinition, store: Any, *,
               config: ServingConfig | None = None, broken: Mapping[str, Exception] | None = None,
               memory: Any = None) -> Flask:
    """A Flask app serving every model of ``definitions`` (or the one given) from ``store``
    (a :class:`handlers.ml.store.ModelStore`); ``broken`` are definitions that did not load (file -> error): they
    are reported and listed in ``/health``. ``memory`` overrides the change memory the configuration names."""
    if isinstance(definitions, ModelDefinition):
        definitions = {definitions.name: definitions}
    config = config or ServingConfig()
    core = Fleet(definitions, store, config, broken=broken, memory=memory)
    app = Flask("letgo-ml-serving")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.config["OPENAPI_DOCUMENT"] = document(service.definition for service in core.services.values())
    app.extensions[EXTENSION] = core
    core.refresh()
    core.start()

    for path, (service, endpoint) in core.routes.items():
        view = _prediction_view(service, endpoint)
        app.add_url_rule(path, endpoint=f"{service.name}.{view.__name__}", view_func=view, methods=[endpoint.method])
    app.add_url_rule(f"{INTERNAL_PREFIX}/<model>/<version>/<path:rest>", view_func=internal_validate,
                     methods=["GET", "POST"])
    app.add_url_rule("/health", view_func=health, methods=["GET"])
    app.add_url_rule("/metrics", view_func=metrics, methods=["GET"])
    app.add_url_rule("/openapi.json", view_func=openapi, methods=["GET"])

    @app.errorhandler(ServingError)
    def serving_error(exc: ServingError) -> tuple[Response, int]:
        body = exc.to_dict()
        return error_response(body.pop("status"), body.pop("code"), body.pop("message"), **body)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        if exc.code == 413:
            return error_response(413, "body_too_large", f"the body is over the limit of {config.max_body_bytes} "
                                                         f"bytes")
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error in the serving app")
        return error_response(500, "internal_error", f"{type(exc).__name__}: the server could not answer")

    return app
