"""Lambda entry point of the upstream data alerts (an EventBridge schedule, every few minutes).

Thin: configuration and a database connection at cold start, then :func:`handlers.statistics.upstream.evaluate`
over the ``events_per_type`` metric and one Sentry message per finding. Returns the findings, so a manual
invoke shows what it saw.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import psycopg

from handlers.core.config import PACKAGE_ROOT, ConfigError, Env
from handlers.core.runtime import ColdStart
from handlers.core.secrets import database_url
from handlers.statistics.upstream import PostgresCounts, TypeCheck, evaluate, load_checks, report


def load(env: Env) -> list[TypeCheck]:
    known = [p.stem for p in (PACKAGE_ROOT / "event_types").glob("[A-Z]*.yaml")]
    return load_checks(env.path("UPSTREAM_ALERTS_CONFIG", PACKAGE_ROOT / "config" / "upstream_alerts.yaml"),
                       known_types=known)


def run(env: Env, checks: list[TypeCheck], now: datetime | None = None) -> dict[str, Any]:
    dsn = database_url(env)  # per run: the secret is re-read after a rotation
    if not dsn:
        raise ConfigError("DATABASE_URL", "is not set, nor DATABASE_IAM_USER or DATABASE_SECRET_ARN (the metrics "
                                          "database)")
    with psycopg.connect(dsn, autocommit=True) as connection:
        findings = evaluate(checks, PostgresCounts(connection), now or datetime.now(timezone.utc))
    sent = report(findings, env.optional("STAGE", "local") or "local")
    return {"findings": [{"event_type": f.event_type, "check": f.check, "message": f.message} for f in findings],
            "reported": sent}


_app = ColdStart("upstream-alerts", load)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run(Env(), _app.get())
