"""The Flask serving wrapper: ``create_app(definition, store, config=...)`` serves one declared model.

The routes come from the model's YAML, not from code: one route per ``serving.endpoints`` entry (its path
and method), taking a JSON object for POST (query parameters for GET), checked by the endpoint's own
compiled input checks. Two operational routes sit beside them:

* ``GET /health`` — model name, the version(s) served and when they were loaded, kill switch, canary
  version and share, the last pointer check and any load problem, and the counters. 200 when a version is
  loaded (even with the kill switch on: the process is healthy, the model is switched off on purpose),
  503 when none is — so a load balancer does not send traffic to an instance that cannot answer.
* ``GET /metrics`` — the counters alone: requests, predictions, errors, clamped and change-limited answers
  per variant, predictions per version, refused requests by reason.

A prediction answers ``{"model", "version", "variant", "prediction": {<declared outputs>}, "clamped",
"change_limited", "guard_rail"?}``. Headers: ``X-User-Id`` (configurable) for the sticky canary,
``X-Model-Version`` to ask for one version (only when ``allow_version_header``; on AWS the route is behind
IAM and only the validator may call it that way).

Every error — ours (:class:`~handlers.ml.serving.errors.ServingError`), Flask's (404, 405, a body that is
not JSON) or an unexpected exception — answers the one shape ``{"error": {"status", "code", "message",
"field"?, "details"?}}``, the same shape as the repo's other APIs.

The core is :class:`~handlers.ml.serving.service.ModelService` (``app.extensions["ml_serving"]``); the views
only decode, delegate and encode. Each request first gives the service a chance to start a pointer check
(at most every ``reload_seconds``).
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from handlers.ml.definition_types import Endpoint, ModelDefinition
from handlers.ml.serving.config import ServingConfig
from handlers.ml.serving.errors import InvalidInput, ServingError
from handlers.ml.serving.service import ModelService

log = logging.getLogger(__name__)

VERSION_HEADER = "X-Model-Version"
EXTENSION = "ml_serving"


def service() -> ModelService:
    return current_app.extensions[EXTENSION]


def error_response(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify(error={"status": status, "code": code, "message": message,
                          **{k: v for k, v in extra.items() if v is not None}}), status


def _body(endpoint: Endpoint) -> Any:
    if endpoint.method == "GET":
        return request.args.to_dict()
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise InvalidInput(f"the body must be a JSON object with the inputs of {endpoint.path} "
                           f"(Content-Type: application/json)", details={"reason": "not_json"})
    return body


def _prediction_view(endpoint: Endpoint) -> Any:
    def view() -> Any:
        core = service()
        version = request.headers.get(VERSION_HEADER) or None
        user_id = request.headers.get(core.config.user_id_header) or None
        answer = core.answer(endpoint.path, _body(endpoint), user_id=user_id, version=version)
        response = jsonify(answer.to_dict())
        response.headers[VERSION_HEADER] = answer.version
        response.headers["X-Model-Variant"] = answer.variant
        return response

    view.__name__ = "predict_" + endpoint.path.strip("/").replace("/", "_").replace("-", "_").replace(".", "_")
    return view


def predictions_blueprint(definition: ModelDefinition) -> Blueprint:
    """One route per declared endpoint."""
    blueprint = Blueprint("predictions", __name__)
    for endpoint in definition.endpoints:
        view = _prediction_view(endpoint)
        blueprint.add_url_rule(endpoint.path, endpoint=view.__name__, view_func=view, methods=[endpoint.method])
    return blueprint


operations = Blueprint("operations", __name__)


@operations.get("/health")
def health() -> Any:
    body = service().health()
    return jsonify(body), 200 if body["served"]["stable"] else 503


@operations.get("/metrics")
def metrics() -> Any:
    core = service()
    return jsonify(model=core.name, **core.counters.snapshot())


def create_app(definition: ModelDefinition, store: Any, *, config: ServingConfig | None = None) -> Flask:
    """A Flask app serving ``definition``'s endpoints from ``store`` (a :class:`handlers.ml.store.ModelStore`).

    The first pointer check runs here, before the app is returned: a process starts with the current version
    loaded (or with the reason it is not, in ``/health``), never with a model still loading.
    """
    config = config or ServingConfig()
    app = Flask(f"letgo-ml-{definition.name}")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    core = ModelService(definition, store, config)
    app.extensions[EXTENSION] = core
    core.refresh()

    @app.before_request
    def check_pointer() -> None:
        core.maybe_refresh()

    app.register_blueprint(predictions_blueprint(definition))
    app.register_blueprint(operations)

    @app.errorhandler(ServingError)
    def serving_error(exc: ServingError) -> tuple[Response, int]:
        body = exc.to_dict()
        return error_response(body.pop("status"), body.pop("code"), body.pop("message"), **body)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error in the serving app")
        return error_response(500, "internal_error", f"{type(exc).__name__}: the server could not answer")

    return app
