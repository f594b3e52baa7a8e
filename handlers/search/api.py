"""The search HTTP API (issue 5): ``create_app(backend, config)`` serves one :class:`SearchBackend`.

Routes, grouped in blueprints by area (the OpenAPI document ``openapi.yaml`` beside this module describes
them, and a functional test keeps the two in step):

* ``search`` — ``GET /search`` (full text, geo, category/price filters, sort, cursor paging, facets,
  did-you-mean) and ``GET /autocomplete`` (titles completing a prefix);
* ``operations`` — ``GET /health`` (200, or 503 when the engine does not answer) and ``GET /openapi.json``;
* ``page`` — ``GET /`` and ``/static/…``: the browser search page (plain HTML + JS + CSS, no build step, no
  third-party origin: its Content-Security-Policy allows ``'self'`` only). Off with ``serve_page=False``.

A request travels: query string -> :func:`~handlers.search.languages.choose_language` (``language`` > the
place: ``lat``/``lon``, else ``country`` > ``user_language`` > ``Accept-Language`` >
:attr:`ApiConfig.default_country`) -> :meth:`SearchRequest.from_params` (every bound checked there,
:class:`InvalidRequest` naming the field) -> ``backend.search`` under a deadline -> ``response.to_dict()`` with
the language choice, ``took_ms`` and, when a text search found nothing, :mod:`.hints` (the same search in
another language of that place, a wider radius). Without a radius, only the listings of the place's country
(:attr:`LanguageChoice.country`) are searched: a buyer in Madrid is not shown listings in London.

Every error — ours (:class:`SearchError` and subclasses), Flask's (404, 405) or an unexpected exception —
is turned into the one JSON shape the repo's APIs share, in one place (:func:`_register_error_handlers`)::

    {"error": {"status": 400, "code": "invalid_request", "message": "lat: 91.0 is outside [-90, 90]",
               "request_id": "…", "field": "lat", "reason": "91.0 is outside [-90, 90]"}}

``field``/``reason`` appear on 400s. Server-side failures (5xx) never carry engine details or a stack trace:
they are logged with the request id, which the client also gets (body and ``X-Request-Id`` header) to quote.

The deadline (:attr:`ApiConfig.max_request_seconds`) runs each engine call on a small thread pool and gives
up waiting after that many seconds with a 504 — below API Gateway's 10 s integration timeout, so the client
gets our error shape instead of the gateway's. The abandoned call finishes in the background (a search cannot
be interrupted from Python); the pool's size bounds how many such calls can pile up.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import yaml
from flask import (Blueprint, Flask, Response, current_app, g, has_request_context, jsonify, request,
                   send_from_directory)
from werkzeug.exceptions import HTTPException

from handlers.core.config import ConfigError
from handlers.search.backend import SearchBackend
from handlers.search.errors import BackendUnavailable, InvalidRequest, SearchError
from handlers.search.hints import zero_result_hints
from handlers.search.languages import LanguageChoice, choose_language
from handlers.search.model import MAX_PRICE, AutocompleteRequest, SearchRequest

log = logging.getLogger("letgo.search.api")

HERE = Path(__file__).resolve().parent
OPENAPI_PATH = HERE / "openapi.yaml"
STATIC_DIR = HERE / "static"
EXTENSION = "letgo_search"
REQUEST_ID_HEADER = "X-Request-Id"
MAX_URL_BYTES = 4096  # the longest valid request is under 2 KB (q 200 chars %-encoded, a 1 KB cursor, the rest)
MAX_BODY_BYTES = 16 * 1024  # every route is a GET
MAX_LANGUAGE_CHARS = 35  # the longest language tag in common use (RFC 5646 §4.4.1 suggests 35)
DEFAULT_AUTOCOMPLETE_LIMIT = 10
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # a caller's id is echoed only when it is this tame
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

T = TypeVar("T")


# -- configuration and errors of the API itself ---------------------------------------------------------------
class SearchTimeout(SearchError):
    """The engine did not answer within the API's deadline (an HTTP 504; the client may retry)."""

    status_code = 504

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"the search engine did not answer within {seconds:g} s")


@dataclass(frozen=True)
class ApiConfig:
    """How one search API process behaves; validated on construction (wsgi.py reads it from the environment)."""

    default_country: str | None = None  # routes requests that carry no language signal at all (e.g. "ES")
    max_request_seconds: float | None = 8.0  # deadline of one engine call (504 after); None = no deadline
    max_concurrent_searches: int = 8  # engine calls in flight per process (the deadline's thread pool)
    serve_page: bool = True  # GET / and /static: the browser search page
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API from other sites; () = CORS off

    def __post_init__(self) -> None:
        if self.default_country is not None and not _COUNTRY.match(self.default_country):
            raise ConfigError("default_country", f"{self.default_country!r} is not a two-letter country code")
        if self.max_request_seconds is not None and not (
                isinstance(self.max_request_seconds, (int, float)) and 0 < self.max_request_seconds <= 300):
            raise ConfigError("max_request_seconds", f"{self.max_request_seconds!r}: seconds in (0, 300], or None")
        if isinstance(self.max_concurrent_searches, bool) or not isinstance(self.max_concurrent_searches, int) \
                or not 1 <= self.max_concurrent_searches <= 256:
            raise ConfigError("max_concurrent_searches", f"{self.max_concurrent_searches!r}: a whole number 1..256")
        for origin in self.cors_origins:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ConfigError("cors_origins", f"{origin!r}: expected '*' or scheme://host[:port], no path")


# -- the core the views delegate to -----------------------------------------------------------------------------
def _one(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    return None if value is None or str(value).strip() == "" else str(value).strip()


def _number(params: Mapping[str, Any], name: str) -> float | None:
    value = _one(params, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidRequest(name, f"{value!r} is not a number") from None


def _language_signal(params: Mapping[str, Any], name: str) -> str | None:
    value = _one(params, name)
    if value is not None and len(value) > MAX_LANGUAGE_CHARS:
        raise InvalidRequest(name, f"{len(value)} characters; a language tag has at most {MAX_LANGUAGE_CHARS}")
    return value


class SearchService:
    """Query-string values in, JSON-ready dicts out: language routing, validation, the deadline, timing."""

    def __init__(self, backend: SearchBackend, config: ApiConfig) -> None:
        self.backend = backend
        self.config = config
        self._pool = (ThreadPoolExecutor(config.max_concurrent_searches, thread_name_prefix="search")
                      if config.max_request_seconds is not None else None)

    def route(self, params: Mapping[str, Any], accept_language: str | None) -> LanguageChoice:
        country = _one(params, "country")
        if country is not None and not _COUNTRY.match(country):
            raise InvalidRequest("country", f"{country!r} is not a two-letter country code (ISO 3166-1, e.g. ES)")
        lat, lon = _number(params, "lat"), _number(params, "lon")
        return choose_language(explicit=_language_signal(params, "language"),
                               user=_language_signal(params, "user_language"), accept_language=accept_language,
                               country=country, lat=lat, lon=lon, default_country=self.config.default_country)

    def search(self, params: Mapping[str, Any], accept_language: str | None) -> dict[str, Any]:
        started = time.perf_counter()
        choice = self.route(params, accept_language)
        search_request = SearchRequest.from_params(params, choice.language)
        if search_request.radius_km is None and choice.country is not None:
            # a buyer searches the ads of the place they are in: its country, unless a radius draws the place
            search_request = replace(search_request, country=choice.country)
        try:
            response = self._call(self.backend.search, search_request)
        except (ValueError, TypeError, OverflowError) as exc:
            # A cursor is an opaque token, but its fingerprint can be recomputed by anyone, so a forged one can
            # reach the engine with values it cannot use (the embedded engine raises ValueError for a key
            # outside int64). That is the client's malformed cursor, not our 500; anything else stays a 500.
            if search_request.cursor is None:
                raise
            log.warning("the engine refused a cursor (request_id=%s): %r",
                        request_id() if has_request_context() else None, exc)
            raise InvalidRequest("cursor", "malformed cursor") from None
        body = response.to_dict()
        body["language"] = choice.to_dict()
        body.update(zero_result_hints(lambda wanted: self._call(self.backend.search, wanted), search_request,
                                      response, choice))
        body["took_ms"] = _elapsed_ms(started)
        return body

    def autocomplete(self, params: Mapping[str, Any], accept_language: str | None) -> dict[str, Any]:
        started = time.perf_counter()
        choice = self.route(params, accept_language)
        raw_limit = _one(params, "limit")
        try:
            limit = int(raw_limit) if raw_limit is not None else DEFAULT_AUTOCOMPLETE_LIMIT
        except ValueError:
            raise InvalidRequest("limit", f"{raw_limit!r} is not an integer") from None
        try:
            wanted = AutocompleteRequest(params.get("q") or "", choice.language, limit, _number(params, "lat"),
                                         _number(params, "lon"))
        except InvalidRequest as exc:  # the model calls the text "prefix"; the API's parameter is q
            raise InvalidRequest("q", exc.reason) if exc.field == "prefix" else exc from None
        suggestions = self._call(self.backend.autocomplete, wanted.prefix, wanted.language, wanted.limit,
                                 wanted.lat, wanted.lon)
        return {"suggestions": [s.to_dict() for s in suggestions], "language": choice.to_dict(),
                "took_ms": _elapsed_ms(started)}

    def health(self) -> tuple[dict[str, Any], SearchError | None]:
        """Asks the engine one query that matches (almost) nothing: cheap on either engine, yet it goes through
        the whole read path (index, query, aggregations), so "ok" means searches can be answered.
        (SearchBackend has no ping of its own.)"""
        started = time.perf_counter()
        probe = SearchRequest(choose_language(default_country=self.config.default_country).language,
                              price_min=MAX_PRICE, page_size=1)
        problem: SearchError | None = None
        try:
            self._call(self.backend.search, probe)
        except SearchError as exc:
            problem = exc
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not healthy"
            log.warning("health probe failed: %r", exc)
            problem = BackendUnavailable(self.backend.name, type(exc).__name__)
        return {"backend": self.backend.name, "ok": problem is None, "took_ms": _elapsed_ms(started)}, problem

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            return fn(*args)
        future = self._pool.submit(fn, *args)
        try:
            return future.result(timeout=self.config.max_request_seconds)
        except FutureTimeout:
            future.cancel()  # still queued: never starts; running: finishes in the background, unread
            raise SearchTimeout(self.config.max_request_seconds or 0) from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def service() -> SearchService:
    return current_app.extensions[EXTENSION]


# -- blueprints --------------------------------------------------------------------------------------------------
search_api = Blueprint("search", __name__)


@search_api.get("/search")
def search() -> Any:
    return jsonify(service().search(request.args, request.headers.get("Accept-Language")))


@search_api.get("/autocomplete")
def autocomplete() -> Any:
    return jsonify(service().autocomplete(request.args, request.headers.get("Accept-Language")))


operations = Blueprint("operations", __name__)


@operations.get("/health")
def health() -> Any:
    body, problem = service().health()
    if problem is None:
        return jsonify(body)
    _log_server_error(problem)
    return jsonify({**body, **_error_body(problem, status=503)}), 503


@operations.get("/openapi.json")
def openapi() -> Any:
    return jsonify(current_app.config["OPENAPI_DOCUMENT"])


page = Blueprint("page", __name__, static_folder=str(STATIC_DIR), static_url_path="/static")


@page.get("/")
def index() -> Response:
    response = send_from_directory(STATIC_DIR, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@page.after_request
def page_policy(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


# -- the one error shape -----------------------------------------------------------------------------------------
def request_id() -> str:
    """The id of this request: the caller's ``X-Request-Id`` when it is a tame token, else a new one."""
    if "request_id" not in g:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    return g.request_id


def error_response(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    body = {"status": status, "code": code, "message": message, "request_id": request_id(),
            **{k: v for k, v in extra.items() if v is not None}}
    return jsonify(error=body), status


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _error_body(exc: SearchError, status: int | None = None) -> dict[str, Any]:
    """The JSON of a SearchError: code from its ``to_dict()``, field/reason for 400s, no internals for 5xx."""
    status = status or exc.status_code
    details = exc.to_dict()
    code = _snake(str(details.pop("error", type(exc).__name__)))
    if status >= 500:
        message = {503: "the search engine is unavailable; retry later",
                   504: str(exc)}.get(status, "the search engine could not answer this request")
        details = {}
    else:
        details.pop("message", None)
        message = str(exc)
    return {"error": {"status": status, "code": code, "message": message, "request_id": request_id(),
                      **{k: v for k, v in details.items() if v is not None}}}


def _log_server_error(exc: BaseException) -> None:
    log.error("request %s %s failed (request_id=%s): %s: %s", request.method, request.path, request_id(),
              type(exc).__name__, exc)


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(SearchError)
    def search_error(exc: SearchError) -> tuple[Response, int]:
        if exc.status_code >= 500:
            _log_server_error(exc)
        return jsonify(_error_body(exc)), exc.status_code

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        response, _ = error_response(status, _snake((exc.name or "error").replace(" ", "")),
                                     exc.description or exc.name or "error")
        allow = exc.get_response().headers.get("Allow")  # a 405 must say which methods are allowed
        if allow:
            response.headers["Allow"] = allow
        return response, status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error in %s %s (request_id=%s)", request.method, request.path, request_id())
        return error_response(500, "internal_error",
                              f"the server could not answer; quote request id {request_id()} when reporting this")


# -- the factory -------------------------------------------------------------------------------------------------
def load_openapi(path: Path = OPENAPI_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3."):
        raise ConfigError(str(path), "not an OpenAPI 3 document")
    return document


def create_app(backend: SearchBackend, config: ApiConfig | None = None) -> Flask:
    """A Flask app serving ``backend`` (already set up: the caller owns its lifecycle)."""
    config = config or ApiConfig()
    app = Flask("letgo-search", static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["OPENAPI_DOCUMENT"] = load_openapi()
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions[EXTENSION] = SearchService(backend, config)

    app.register_blueprint(search_api)
    app.register_blueprint(operations)
    if config.serve_page:
        app.register_blueprint(page)
    _register_error_handlers(app)

    @app.before_request
    def assign_request_id() -> Any:
        request_id()
        environ = request.environ  # read directly: these are limits of the server, not inputs of the API
        size = max(len(environ.get("RAW_URI") or ""), len(environ.get("PATH_INFO") or "")
                   + len(environ.get("QUERY_STRING") or "") + 1)
        if size > MAX_URL_BYTES:
            return error_response(414, "uri_too_long", f"the URL has {size} bytes; at most {MAX_URL_BYTES}")
        body = environ.get("CONTENT_LENGTH") or "0"
        if not body.isdigit() or int(body) > MAX_BODY_BYTES:
            return error_response(413, "request_entity_too_large", f"at most {MAX_BODY_BYTES} bytes of body")
        return None

    @app.after_request
    def common_headers(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = request_id()
        response.headers["X-Content-Type-Options"] = "nosniff"
        origin = request.headers.get("Origin")
        if origin and ("*" in config.cors_origins or origin in config.cors_origins):
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in config.cors_origins else origin
            response.headers["Access-Control-Expose-Headers"] = REQUEST_ID_HEADER
            response.vary.add("Origin")
        return response

    return app
