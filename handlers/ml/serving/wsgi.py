"""The WSGI entry point of the serving image: ``gunicorn handlers.ml.serving.wsgi:app``.

Everything comes from the environment (Elastic Beanstalk sets it from the layer's option settings), checked
once here so a bad value stops the worker at boot with the variable's name:

* ``MODEL_DEFINITIONS_DIR`` — the models' YAML files (default ``models/`` beside ``handlers/``); every model
  there is served (one deployment, N models: :mod:`handlers.ml.serving.fleet` says why), ``MODELS`` (comma
  separated names) to serve only some. A definition that does not load disables that model (Sentry, ``/health``),
  not the process. ``MODEL_DEFINITION`` (one file) still works: that model alone;
* ``MODELS_BUCKET`` (required), ``MODELS_PREFIX`` (default ``models/``) — the model store;
* ``RELOAD_SECONDS``, ``STALE_AFTER_SECONDS``, ``CANARIES``, ``CHANGE_MEMORY``, ``MAX_BODY_BYTES``, … — see
  :meth:`handlers.ml.serving.config.ServingConfig.from_environ`;
* ``STAGE``, ``SENTRY_DSN`` (or ``SENTRY_DSN_SECRET_ARN``, ``SENTRY_LOCAL_PATH``) — problem reports;
* ``AWS_ENDPOINT_URL`` — honoured by boto3 (moto, the local stage).

Each gunicorn worker imports this module and so builds its own app, loads the models and starts its poll
threads on its own (no ``--preload``: a thread would not survive the fork).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from flask import Flask

from handlers.core.alerts import init_sentry
from handlers.core.config import PACKAGE_ROOT, ConfigError
from handlers.ml.definition import load_definitions_safely
from handlers.ml.serving.app import create_app
from handlers.ml.serving.config import ServingConfig
from handlers.ml.store import ModelStore


def build(environ: Mapping[str, str] = os.environ) -> Flask:
    """The app for this environment (tests call it with a dict)."""
    bucket = environ.get("MODELS_BUCKET", "").strip()
    if not bucket:
        raise ConfigError("MODELS_BUCKET", "required: the bucket of the model store")
    single = environ.get("MODEL_DEFINITION", "").strip()
    directory = Path(single).parent if single else Path(environ.get("MODEL_DEFINITIONS_DIR", "").strip()
                                                         or PACKAGE_ROOT / "models")
    if not directory.is_dir():
        raise ConfigError("MODEL_DEFINITIONS_DIR", f"{directory} is not a directory of model YAML files")
    names = [n.strip() for n in environ.get("MODELS", "").split(",") if n.strip()]
    only = {Path(single).stem} if single else set(names) if names else None
    definitions, broken = load_definitions_safely(directory, only=only)
    if only is not None:
        missing = sorted(only - set(definitions) - {Path(f).stem for f in broken})
        if missing:
            raise ConfigError("MODELS", f"no definition of {', '.join(missing)} in {directory}")
    if not definitions and not broken:
        raise ConfigError("MODEL_DEFINITIONS_DIR", f"no model definitions (*.yaml) in {directory}")
    store = ModelStore(bucket, prefix=environ.get("MODELS_PREFIX", "models/").strip() or "models/")
    return create_app(definitions, store, config=ServingConfig.from_environ(environ), broken=broken)


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
