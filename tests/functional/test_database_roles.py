"""Application database users on a real PostgreSQL (issue 12, item 8): the migrations create one role per
application with only the grants it needs, and the real sinks work as those roles — and only within them.

The migrator here is a non-superuser with CREATEROLE and CREATEDB, like Aurora's master user (rds_superuser is
no superuser), on a server of its own: what `letgo db migrate` does on a fresh cluster.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import psycopg
import pytest

from handlers.statistics.aggregate import MetricRow, dims_key
from handlers.statistics.sink import MetricSink
from handlers.statistics.upstream import METRIC, PostgresCounts
from handlers.tracking.sinks.postgres import PostgresSink
from letgo.postgres_migrations import migrate
from letgo.services.postgres import PostgresServer
from tests.conftest import record
from tests.stage_kit import private_tmp

pytestmark = pytest.mark.functional

ROLES = ("letgo_consumer", "letgo_statistics", "letgo_upstream_alerts")


def as_user(dsn: str, user: str) -> str:
    """The same server and database, logged in as ``user`` (the test server trusts local logins)."""
    rest = dsn.split("@", 1)[1]
    return f"postgresql://{user}@{rest}"


@pytest.fixture(scope="module")
def database():
    with private_tmp("letgo-dbroles-") as directory, PostgresServer(directory / "pg") as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as admin:
            admin.execute("CREATE ROLE aurora_master LOGIN CREATEROLE CREATEDB")  # not a superuser
            admin.execute("CREATE DATABASE letgo OWNER aurora_master")
        dsn = as_user(pg.dsn, "aurora_master").rsplit("/", 1)[0] + "/letgo"
        assert "0004_application_roles" in migrate(dsn)
        yield pg, dsn


def refused(dsn: str, statement: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


def events(processor, *days_ago: int):
    now = datetime.now(timezone.utc)
    payloads = [orjson.dumps({
        "type": "Lead", "messageId": str(uuid.uuid4()), "userId": "u-1",
        "timestamp": (now - timedelta(days=d)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "context": {"app": {"version": "4.12.0"}},
        "properties": {"item_id": "it-1", "seller_id": "u-2", "category": "bikes", "channel": "chat"}})
        for d in days_ago]
    result = processor.process([record(p, seq=str(i + 1)) for i, p in enumerate(payloads)])
    assert not result.rejections
    return result.events


def test_each_application_has_its_own_login_role_and_none_is_privileged(database):
    pg, dsn = database
    with psycopg.connect(dsn) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
            "WHERE rolname LIKE 'letgo\\_%'")}
    assert set(ROLES) <= set(rows) and rows["letgo_events_owner"][0] is False  # the owner cannot log in
    for role in ROLES:
        assert rows[role] == (True, False, False, False, False), role


def test_the_consumer_writes_events_and_creates_day_partitions_but_reads_no_statistics(database, processor):
    _, dsn = database
    consumer = as_user(dsn, "letgo_consumer")
    sink = PostgresSink(consumer)
    try:
        batch = events(processor, 0, 3, 6)  # three days: partitions the consumer must create itself
        assert sink.write(batch).inserted == 3
        assert sink.write(batch).inserted == 0  # retried: nothing new
    finally:
        sink.close()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3
        owners = {r[0] for r in conn.execute(
            "SELECT pg_get_userbyid(c.relowner) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass")}
    assert owners == {"letgo_consumer"}
    assert refused(consumer, "SELECT * FROM metric_windows")
    assert refused(consumer, "DELETE FROM schema_migrations")
    assert refused(consumer, "CREATE ROLE intruder")


def row(count: int) -> MetricRow:
    return MetricRow(metric=METRIC, version=1, dims={"type": "Lead"}, dims_key=dims_key(["Lead"]), count=count,
                     sum=None, min=None, max=None, distinct=None, value=float(count))


def test_statistics_rewrite_their_windows_and_upstream_alerts_only_read_them(database):
    _, dsn = database
    statistics = as_user(dsn, "letgo_statistics")
    start = datetime(2026, 12, 4, 10, 0, tzinfo=timezone.utc)
    sink = MetricSink(statistics)
    try:
        assert sink.write_window([row(5)], {f"{METRIC}:v1": 60}, start, "shardId-0") == 1
        assert sink.write_window([row(7)], {f"{METRIC}:v1": 60}, start, "shardId-0") == 1  # a repeated final invoke
        assert [w["count"] for w in sink.last_windows(METRIC)] == [7]
    finally:
        sink.close()
    assert refused(statistics, "SELECT * FROM events")
    assert refused(statistics, "INSERT INTO event_ids VALUES ('x', now())")

    upstream = as_user(dsn, "letgo_upstream_alerts")
    with psycopg.connect(upstream, autocommit=True) as conn:
        assert PostgresCounts(conn)("Lead", start, start + timedelta(minutes=1)) == 7
    assert refused(upstream, "DELETE FROM metric_windows")
    assert refused(upstream, "SELECT * FROM events")


def test_migrating_a_second_database_of_the_same_server_reuses_the_roles(database):
    pg, dsn = database
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE letgo_again")
    again = dsn.rsplit("/", 1)[0] + "/letgo_again"
    assert "0004_application_roles" in migrate(again)
    assert migrate(again) == []  # applied once
    with psycopg.connect(as_user(again, "letgo_statistics")) as conn:
        assert conn.execute("SELECT count(*) FROM metric_windows").fetchone()[0] == 0


def test_a_deployed_application_logs_in_as_its_user_with_a_fresh_iam_token(database, processor, monkeypatch):
    """DATABASE_IAM_USER: the consumer's DSN is that user with an IAM token as password (signed with the
    function's credentials, made at every connect); the real sink connects with it (the test server trusts the
    login: Aurora checks the token) and writes as letgo_consumer."""
    from urllib.parse import unquote, urlsplit

    from handlers.core import aws as core_aws
    from handlers.core.config import Env
    from handlers.core.secrets import DatabaseUrl, database_dsn
    from letgo.services.moto import FAKE_CREDENTIALS

    pg, _ = database
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    core_aws.reset_clients()
    env = Env({"DATABASE_IAM_USER": "letgo_consumer", "DATABASE_HOST": "127.0.0.1", "DATABASE_PORT": str(pg.port),
               "DATABASE_NAME": "letgo", "DATABASE_SSLMODE": "disable",
               "DATABASE_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:master-AbCdEf"})
    dsn = database_dsn(env)
    assert isinstance(dsn, DatabaseUrl)
    url = urlsplit(dsn())
    token = unquote(url.password)
    assert url.username == "letgo_consumer" and url.path == "/letgo"  # the application user, never the master's
    assert token.startswith(f"127.0.0.1:{pg.port}/?Action=connect&DBUser=letgo_consumer")
    assert "X-Amz-Signature=" in token and "X-Amz-Expires=900" in token

    sink = PostgresSink(dsn)
    try:
        assert sink.write(events(processor, 1)).inserted == 1
    finally:
        sink.close()
    with psycopg.connect(dsn()) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "letgo_consumer"
    core_aws.reset_clients()
