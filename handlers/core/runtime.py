"""A function's cold start, done one way: Sentry first, then the handler object, once per container.

Every Lambda entry point is a few lines over this::

    _app = ColdStart("statistics", build_handler)        # build_handler(env: Env) -> the handler object

    def handler(event, context):
        return _app.get().handle(event, budget_seconds=wait_budget(context))

A broken configuration fails the cold start with a :class:`~handlers.core.config.ConfigError` naming the
variable (Lambda reports it on every invocation until fixed; nothing is consumed meanwhile).
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from handlers.core.config import Env

T = TypeVar("T")

# Seconds of an invocation kept free after waiting out an outage: an attempt against a dependency that hangs
# lasts until its timeouts (S3/Firehose: 3 s connect, 10 s read, 2 tries; PostgreSQL: 5 s connect plus its
# statement timeout). Running into the function's timeout would be a function error: the batch would be
# bisected and retried — nothing lost, but wasteful.
SAFETY_MARGIN_SECONDS = 40.0
MAX_WAIT_SECONDS = 600.0


def wait_budget(context: Any, margin: float = SAFETY_MARGIN_SECONDS) -> float:
    """How long this invocation may wait out an outage before handing its batch back."""
    return max(0.0, min(MAX_WAIT_SECONDS, context.get_remaining_time_in_millis() / 1000 - margin))


class ColdStart(Generic[T]):
    """Builds ``build(env)`` once per container, after initialising Sentry for ``STAGE``."""

    def __init__(self, service: str, build: Callable[[Env], T]) -> None:
        self.service, self.build = service, build
        self._value: T | None = None

    def get(self, env: Env | None = None) -> T:
        if self._value is None:
            from handlers.core.alerts import init_sentry

            env = env or Env()
            init_sentry(env.optional("STAGE", "local") or "local")  # the DSN: SENTRY_DSN or its secret's ARN
            self._value = self.build(env)
        return self._value

    def use(self, value: T) -> None:
        """Supply a ready object instead of building one (the local stage, benchmarks, tests)."""
        self.reset()
        self._value = value

    def reset(self) -> None:
        """Drop the built object (the local stage and tests re-point the environment between runs)."""
        value, self._value = self._value, None
        close = getattr(value, "close", None)
        if callable(close):
            close()
