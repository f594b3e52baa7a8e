"""The WSGI entry point of the search API: ``gunicorn handlers.search.wsgi:app``.

Elastic Beanstalk's Python platform runs it (the Procfile that ``deploy/package.py`` writes into the
search-api bundle); the beanstalk layer sets the environment. Everything is read once, here, at import — a
worker with a bad environment stops at boot with a :class:`~handlers.core.config.ConfigError` naming the
variable:

* the engine: ``LETGO_SEARCH_BACKEND`` (required), then ``LETGO_OPENSEARCH_URL`` and the other
  ``LETGO_OPENSEARCH_*`` variables (requests SigV4-signed with the instance role's credentials when
  ``LETGO_OPENSEARCH_AWS_REGION`` is set, as the beanstalk layer does) or ``LETGO_SEARCH_PATH`` (the index
  directory the local stage's indexer writes) — read by :func:`handlers.search.factory.open_backend`, the
  very function and rules the indexer uses;
* ``SEARCH_DEFAULT_COUNTRY`` (e.g. ``ES``), ``SEARCH_MAX_REQUEST_SECONDS`` (default 8; ``0`` = no deadline),
  ``SEARCH_MAX_CONCURRENT`` (default 8), ``SEARCH_SERVE_PAGE`` (default true), ``SEARCH_CORS_ORIGINS``
  (comma-separated origins, or ``*``; unset = CORS off) — see :class:`~handlers.search.api.ApiConfig`;
* ``STAGE``, ``SENTRY_DSN`` (or ``SENTRY_LOCAL_PATH``) — problem reports; ``LOG_LEVEL``.

Index setup is idempotent and runs at every start (as on every deploy) unless ``LETGO_SEARCH_SETUP`` is off
(``0``: on AWS ``letgo search setup`` makes the indices; a flag, read as the indexer reads it). An engine
that cannot be reached at boot does not stop the worker: ``/health`` answers 503 until it can, so the load
balancer holds traffic back while the process stays up to recover; any other setup failure (a refused
template, say) stops start-up.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping

from flask import Flask

from handlers.core.config import ConfigError, Env
from handlers.search.api import ApiConfig, create_app
from handlers.search.errors import BackendUnavailable
from handlers.search.factory import open_backend

log = logging.getLogger("letgo.search.wsgi")


def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def api_config_from_env(env: Mapping[str, str]) -> ApiConfig:
    values: dict = {"serve_page": Env(env).flag("SEARCH_SERVE_PAGE", True)}
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
        raise ConfigError(variables.get(exc.where, exc.where), exc.message) from None


def build(env: Mapping[str, str] = os.environ) -> Flask:
    """The app for this environment, its engine set up (or known to be unreachable: see the module doc)."""
    config = api_config_from_env(env)
    backend = open_backend(env)
    if not Env(env).flag("LETGO_SEARCH_SETUP", True):  # on AWS `letgo search setup` made them (access.py)
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
