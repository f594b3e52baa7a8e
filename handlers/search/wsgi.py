"""The WSGI entry point of the search API: ``gunicorn handlers.search.wsgi:app``.

Elastic Beanstalk's Python platform runs it (the Procfile that ``deploy/package.py`` writes into the
search-api bundle); the beanstalk layer sets the environment. Everything is read once, here, at import — a
worker with a bad environment stops at boot with a message naming the variable:

* ``LETGO_SEARCH_BACKEND`` (required) — ``opensearch`` (AWS) or ``tantivy`` (the local stage);
* ``LETGO_OPENSEARCH_URL`` — with opensearch: ``https://<domain endpoint>``; requests are SigV4-signed with
  ``LETGO_OPENSEARCH_AWS_REGION`` (set by the beanstalk layer; ``AWS_REGION`` also counts for an
  ``*.amazonaws.com`` endpoint) with the instance role's credentials; optional ``LETGO_OPENSEARCH_NAMESPACE``
  and ``LETGO_OPENSEARCH_SPLIT_CATEGORIES`` (comma-separated) — the very variables the indexer reads;
* ``LETGO_SEARCH_PATH`` — with tantivy: the index directory (the one the local stage's indexer writes);
* ``SEARCH_DEFAULT_COUNTRY`` (e.g. ``ES``), ``SEARCH_MAX_REQUEST_SECONDS`` (default 8; ``0`` = no deadline),
  ``SEARCH_MAX_CONCURRENT`` (default 8), ``SEARCH_SERVE_PAGE`` (default true), ``SEARCH_CORS_ORIGINS``
  (comma-separated origins, or ``*``; unset = CORS off) — see :class:`~handlers.search.api.ApiConfig`;
* ``STAGE``, ``SENTRY_DSN`` (or ``SENTRY_LOCAL_PATH``) — problem reports; ``LOG_LEVEL``.

Index setup is idempotent and runs at every start (as on every deploy). An engine that cannot be reached at
boot does not stop the worker: ``/health`` answers 503 until it can, so the load balancer holds traffic back
while the process stays up to recover; any other setup failure (a refused template, say) stops start-up.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from flask import Flask

from handlers.search.api import ApiConfig, ConfigError, create_app
from handlers.search.backend import SearchBackend
from handlers.search.errors import BackendUnavailable

log = logging.getLogger("letgo.search.wsgi")

BACKENDS = ("opensearch", "tantivy")
TRUE, FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = _get(env, name)
    if not value:
        raise ConfigError(name, f"required: {what}")
    return value


def backend_from_env(env: Mapping[str, str]) -> SearchBackend:
    """The engine the environment names, not yet set up (the same variables as the indexer's)."""
    kind = _required(env, "LETGO_SEARCH_BACKEND", f"one of {', '.join(BACKENDS)}").lower()
    if kind == "opensearch":
        from handlers.search.opensearch_backend import OpenSearchBackend, OpenSearchConfig

        _required(env, "LETGO_OPENSEARCH_URL", "the domain endpoint as https://host (LETGO_SEARCH_BACKEND=opensearch)")
        try:
            config = OpenSearchConfig.from_env(env)
        except ValueError as exc:
            message = str(exc)
            variable = next((v for key, v in (("namespace", "LETGO_OPENSEARCH_NAMESPACE"),
                                              ("split_categories", "LETGO_OPENSEARCH_SPLIT_CATEGORIES"))
                             if message.startswith(key)), "LETGO_OPENSEARCH_URL")
            raise ConfigError(variable, message) from None
        return OpenSearchBackend(config)
    if kind == "tantivy":
        from handlers.search.tantivy_backend import TantivyBackend

        path = Path(_required(env, "LETGO_SEARCH_PATH", "the index directory (LETGO_SEARCH_BACKEND=tantivy)"))
        if path.exists() and not path.is_dir():
            raise ConfigError("LETGO_SEARCH_PATH", f"{path} is not a directory")
        return TantivyBackend(path)
    raise ConfigError("LETGO_SEARCH_BACKEND", f"{kind!r}: expected one of {', '.join(BACKENDS)}")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _get(env, name).lower()
    if not value:
        return default
    if value in TRUE | FALSE:
        return value in TRUE
    raise ConfigError(name, f"{value!r} is not a boolean; use true/false, 1/0, yes/no or on/off")


def api_config_from_env(env: Mapping[str, str]) -> ApiConfig:
    values: dict = {"serve_page": _flag(env, "SEARCH_SERVE_PAGE", True)}
    if _get(env, "SEARCH_DEFAULT_COUNTRY"):
        values["default_country"] = _get(env, "SEARCH_DEFAULT_COUNTRY").upper()
    for variable, name, kind in (("SEARCH_MAX_REQUEST_SECONDS", "max_request_seconds", float),
                                 ("SEARCH_MAX_CONCURRENT", "max_concurrent_searches", int)):
        raw = _get(env, variable)
        if raw:
            try:
                values[name] = kind(raw)
            except ValueError:
                raise ConfigError(variable, f"{raw!r} is not a {'whole ' if kind is int else ''}number") from None
    if values.get("max_request_seconds") == 0:
        values["max_request_seconds"] = None
    origins = tuple(o.strip().rstrip("/") for o in _get(env, "SEARCH_CORS_ORIGINS").split(",") if o.strip())
    values["cors_origins"] = origins
    variables = {"default_country": "SEARCH_DEFAULT_COUNTRY", "max_request_seconds": "SEARCH_MAX_REQUEST_SECONDS",
                 "max_concurrent_searches": "SEARCH_MAX_CONCURRENT", "cors_origins": "SEARCH_CORS_ORIGINS"}
    try:
        return ApiConfig(**values)
    except ConfigError as exc:  # name the variable a person sets, not the field
        raise ConfigError(variables.get(exc.setting, exc.setting), exc.reason) from None


def build(env: Mapping[str, str] = os.environ) -> Flask:
    """The app for this environment, its engine set up (or known to be unreachable: see the module doc)."""
    config = api_config_from_env(env)
    backend = backend_from_env(env)
    if _get(env, "LETGO_SEARCH_SETUP") == "0":  # on AWS `letgo search setup` made the indices (access.py)
        return create_app(backend, config)
    try:
        backend.setup()
    except BackendUnavailable as exc:
        log.error("search engine unreachable at start-up (%s); /health answers 503 until it answers", exc)
    return create_app(backend, config)


def _boot() -> Flask:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from handlers.core.alerts import init_sentry

    init_sentry(os.environ.get("STAGE", "local"))
    return build(os.environ)


app = _boot()
