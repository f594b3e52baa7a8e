"""The WSGI entry point of the serving image: ``gunicorn handlers.ml.serving.wsgi:app``.

Everything comes from the environment (Elastic Beanstalk sets it from the layer's option settings), checked
once here so a bad value stops the worker at boot with the variable's name:

* ``MODEL_DEFINITION`` — path of the model's YAML (``models/price_suggestion.yaml`` in the image);
* ``MODELS_BUCKET`` (required), ``MODELS_PREFIX`` (default ``models/``) — the model store;
* ``CANARY_VERSION``, ``CANARY_SHARE``, ``RELOAD_SECONDS``, ``ALLOW_VERSION_HEADER``, ``USER_ID_HEADER``, … —
  see :meth:`handlers.ml.serving.config.ServingConfig.from_environ`;
* ``STAGE``, ``SENTRY_DSN`` (or ``SENTRY_LOCAL_PATH``) — problem reports;
* ``AWS_ENDPOINT_URL`` — honoured by boto3 (moto, the local stage).

Each gunicorn worker imports this module and so builds its own app, loads the model and checks the pointer
on its own (no ``--preload``: a reload thread would not survive the fork).
"""
from __future__ import annotations

import logging
import os
from typing import Mapping

from flask import Flask

from handlers.core.alerts import init_sentry
from handlers.core.config import ConfigError
from handlers.ml.definition import load_definition
from handlers.ml.serving.app import create_app
from handlers.ml.serving.config import ServingConfig
from handlers.ml.store import ModelStore


def build(environ: Mapping[str, str] = os.environ) -> Flask:
    """The app for this environment (tests call it with a dict)."""
    path = environ.get("MODEL_DEFINITION", "").strip()
    if not path:
        raise ConfigError("MODEL_DEFINITION", "required: the path of the model's YAML, e.g. "
                                              "models/price_suggestion.yaml")
    bucket = environ.get("MODELS_BUCKET", "").strip()
    if not bucket:
        raise ConfigError("MODELS_BUCKET", "required: the bucket of the model store")
    definition = load_definition(path)
    store = ModelStore(bucket, prefix=environ.get("MODELS_PREFIX", "models/").strip() or "models/")
    return create_app(definition, store, config=ServingConfig.from_environ(environ))


def _app() -> Flask:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    init_sentry(os.environ.get("STAGE", "local"))
    return build()


def __getattr__(name: str) -> Flask:
    """``app`` is built on first access (gunicorn's ``getattr(module, "app")``), not on a plain import, so tests
    can import :func:`build`; a bad environment still fails at worker boot, naming the variable."""
    if name != "app":
        raise AttributeError(name)
    built = globals().get("_built")
    if built is None:
        built = globals()["_built"] = _app()
    return built
