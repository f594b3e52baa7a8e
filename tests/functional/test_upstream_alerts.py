"""Upstream data alerts over real metric windows in PostgreSQL, reported through real sentry-sdk (local transport)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from handlers.core.alerts import init_sentry, read_local_alerts
from handlers.core.config import Env
from handlers.statistics import lambda_upstream

pytestmark = pytest.mark.functional

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


def write_minutes(conn, event_type: str, start: datetime, minutes: int, per_minute: int) -> None:
    """events_per_type rows the way the statistics sink stores them: one per minute window and shard."""
    rows = []
    for i in range(minutes):
        window = start + timedelta(minutes=i)
        rows.append(("events_per_type", 1, window, window + timedelta(minutes=1), window, "shardId-000000000000",
                     f'["{event_type}"]', f'{{"type": "{event_type}"}}', per_minute))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO metric_windows (metric, version, metric_window_start, metric_window_end, "
                        "stream_window_start, shard_id, dims_key, dims, count) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                        rows)


@pytest.fixture
def metrics_db(stage):
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM metric_windows WHERE metric = 'events_per_type'")
        yield conn
        conn.execute("DELETE FROM metric_windows WHERE metric = 'events_per_type'")


def test_a_silent_type_and_a_spiking_type_raise_one_grouped_alert_each(stage, metrics_db):
    hour = NOW - timedelta(hours=1)
    for days_ago in range(1, 8):  # the usual level: the same hour on the previous week
        for event_type in ("Lead", "AppOpened", "ItemViewed"):
            write_minutes(metrics_db, event_type, hour - timedelta(days=days_ago), 60, 10)
    write_minutes(metrics_db, "Lead", hour, 20, 10)        # Lead stopped 40 minutes ago
    write_minutes(metrics_db, "AppOpened", hour, 60, 12)    # normal
    write_minutes(metrics_db, "ItemViewed", hour, 60, 80)   # 8x its usual level
    init_sentry("test", local_path=stage.sentry_path)
    env = Env({"DATABASE_URL": stage.postgres.dsn, "STAGE": "test"})
    checks = lambda_upstream.load(env)
    result = lambda_upstream.run(env, checks, now=NOW)
    assert sorted((f["event_type"], f["check"]) for f in result["findings"]) == [
        ("ItemListed", "absent"), ("ItemViewed", "volume_high"), ("Lead", "absent"), ("Search", "absent")]
    lambda_upstream.run(env, checks, now=NOW)  # the next scheduled run: same issues, not new ones
    issues = {tuple(i["fingerprint"]): i for i in read_local_alerts(stage.sentry_path)}
    assert ("upstream-data", "Lead", "absent") in issues
    assert issues[("upstream-data", "Lead", "absent")]["events"] == 2
    assert "no Lead events for 30 minutes (usually about 300)" in issues[("upstream-data", "Lead", "absent")]["title"]
    assert len(issues) == 4


def test_cli_prints_findings_and_fails_when_there_are_some(stage, metrics_db, tmp_path, capsys):
    from letgo import cli

    alerts = tmp_path / "alerts.jsonl"
    code = cli.main(["metrics", "upstream", "--dsn", stage.postgres.dsn, "--alerts", str(alerts)])
    out = capsys.readouterr().out
    assert code == 1  # an empty database: every type with an absence check is silent
    assert "absent" in out and "no Lead events for 30 minutes" in out
    assert {tuple(i["fingerprint"]) for i in read_local_alerts(alerts)} >= {("upstream-data", "Lead", "absent")}


def test_deployed_code_reads_the_sentry_dsn_from_its_secret(stage, monkeypatch):
    """Every function and service gets SENTRY_DSN_SECRET_ARN (never the DSN itself): init_sentry resolves it."""
    import sentry_sdk

    from handlers.core.aws import client

    dsn = "https://public@o0.ingest.sentry.example/42"
    arn = client("secretsmanager").create_secret(Name="letgo/sentry-dsn-test", SecretString=dsn)["ARN"]
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    monkeypatch.setenv("SENTRY_DSN_SECRET_ARN", arn)
    try:
        init_sentry("test")
        assert sentry_sdk.get_client().dsn == dsn
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        client("secretsmanager").delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
