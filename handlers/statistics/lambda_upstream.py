"""Lambda entry point of the upstream data alerts (an EventBridge schedule, every few minutes).

Thin: configuration and a database connection at cold start, then :func:`handlers.statistics.upstream.evaluate`
over the ``events_per_type`` metric and one Sentry message per finding. Returns the findings, so a manual
invoke shows what it saw.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from handlers.core.alerts import init_sentry
from handlers.statistics.upstream import PostgresCounts, evaluate, load_checks, report
from handlers.tracking.consumer import database_url_from_secret
from handlers.tracking.settings import PACKAGE_ROOT

_checks = None
_sentry = False


def run(env: dict[str, str], now: datetime | None = None) -> dict[str, Any]:
    global _checks
    if _checks is None:
        known = [p.stem for p in (PACKAGE_ROOT / "event_types").glob("[A-Z]*.yaml")]
        config = env.get("UPSTREAM_ALERTS_CONFIG") or PACKAGE_ROOT / "config" / "upstream_alerts.yaml"
        _checks = load_checks(Path(config), known_types=known)
    dsn = env.get("DATABASE_URL") or database_url_from_secret(env.get("DATABASE_SECRET_ARN"), env)
    if not dsn:
        raise RuntimeError("upstream alerts misconfigured: set DATABASE_URL or DATABASE_SECRET_ARN")
    with psycopg.connect(dsn, autocommit=True) as connection:
        findings = evaluate(_checks, PostgresCounts(connection), now or datetime.now(timezone.utc))
    sent = report(findings, env.get("STAGE", "local"))
    return {"findings": [{"event_type": f.event_type, "check": f.check, "message": f.message} for f in findings],
            "reported": sent}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _sentry
    if not _sentry:  # once per container; the DSN lives in Secrets Manager (SENTRY_DSN_SECRET_ARN)
        init_sentry(os.environ.get("STAGE", "local"))
        _sentry = True
    return run(dict(os.environ))
