"""PostgresSink on a real PostgreSQL: one row per messageId, refused rows set aside, outages told from bad data.

The module runs its own server (``PostgresServer`` + ``migrate``, as the local stage does) rather than the
session stage's: these tests really stop it (``pg_ctl stop -m immediate``) and hold locks on its tables.
"""
from __future__ import annotations

import copy
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import psycopg
import pytest

from handlers.tracking.errors import SinkError, SinkUnavailable
from handlers.tracking.sinks.postgres import PostgresSink, Written
from letgo.postgres_migrations import MIGRATIONS_DIR, migrate
from letgo.services.postgres import PostgresServer, find_bin
from tests.conftest import record
from tests.stage_kit import private_tmp

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def server():
    with private_tmp("letgo-pgsink-") as directory, PostgresServer(directory / "pg") as pg:
        migrate(pg.dsn)
        yield pg


@pytest.fixture
def dsn(server):
    if not (server.data / "postmaster.pid").exists():  # a failed outage test left it stopped
        server.start()
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events, event_ids")
    return server.dsn


@pytest.fixture
def sink(dsn):
    sink = PostgresSink(dsn)
    yield sink
    sink.close()


def stop_immediately(server: PostgresServer) -> None:
    """A crash, as far as clients can tell: no shutdown checkpoint, connections cut.

    The test server runs with ``synchronous_commit=off`` (speed), so a commit acknowledged in the last
    ~200 ms could vanish with it; a CHECKPOINT first keeps these tests about the sink, not about that setting.
    """
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    server._run(find_bin("pg_ctl"), "-D", str(server.data), "-m", "immediate", "-w", "-t", "30", "stop")


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(message_id: str | None = None, *, timestamp: datetime | None = None, context: dict | None = None,
            **envelope) -> bytes:
    return orjson.dumps({
        "type": "Lead", "messageId": message_id or str(uuid.uuid4()), "userId": "u-1",
        "timestamp": iso(timestamp or datetime.now(timezone.utc)),
        "context": {"app": {"version": "4.12.0"}, **(context or {})},
        "properties": {"item_id": "it-1", "seller_id": "u-2", "category": "bikes", "channel": "chat"}, **envelope})


def events(processor, *payloads: bytes) -> list:
    result = processor.process([record(p, seq=str(i + 1)) for i, p in enumerate(payloads)])
    assert not result.rejections, [r.describe() for r in result.rejections]
    return result.events


def stored(dsn: str, table: str = "events") -> dict[str, datetime]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute(f"SELECT message_id, event_time FROM {table}").fetchall())


def test_the_binary_fast_path_stores_what_postgresql_reads_from_the_text(processor, sink, dsn):
    """The fast path sends timestamps as microseconds and jsonb as bytes: every column must read back as
    PostgreSQL parses the event's own text (also for sentAt values far from now, before 2000 and at year 1)."""
    batch = events(processor, payload("t-1", sentAt="0001-01-01T00:00:00Z", anonymousId="anon-1"),
                   payload("t-2", sentAt="1999-12-31T23:59:59.999Z", context={"ip": "10.0.0.1", "locale": "é"}),
                   payload("t-3", sentAt="9999-12-31T23:59:59.999Z"), payload("t-4"))
    assert sink.write(batch).inserted == 4
    with psycopg.connect(dsn) as conn:
        for event in batch:
            stored_row = conn.execute("SELECT event_type, event_time, received_at, sent_at, user_id, anonymous_id, "
                                      "schema_version, context, properties FROM events WHERE message_id = %s",
                                      (event.message_id,)).fetchone()
            expected = conn.execute(
                "SELECT %s, %s::timestamptz, %s::timestamptz, %s::timestamptz, %s, %s, %s::int, %s::jsonb, %s::jsonb",
                (event.type, event.timestamp, event.received_at, event.sent_at, event.user_id, event.anonymous_id,
                 event.version, event.context_json(), event.properties_json())).fetchone()
            assert stored_row == expected
            assert conn.execute("SELECT event_time FROM event_ids WHERE message_id = %s",
                                (event.message_id,)).fetchone()[0] == expected[1]


def test_same_message_id_with_another_timestamp_across_batches_is_one_row(processor, sink, dsn):
    now = datetime.now(timezone.utc)
    first = events(processor, payload("m-1", timestamp=now - timedelta(days=2)), payload("m-2"))
    assert sink.write(first) == Written(inserted=2)
    # an app re-sends m-1 stamped today (another partition), next to a new event
    again = events(processor, payload("m-1", timestamp=now), payload("m-3"))
    written = sink.write(again)
    assert (written.inserted, written.already_there, written.refused) == (1, ["m-1"], {})
    rows = stored(dsn)
    assert sorted(rows) == ["m-1", "m-2", "m-3"]
    assert iso(rows["m-1"]) == first[0].timestamp  # the copy stored first stays
    assert stored(dsn, "event_ids") == rows


def test_same_message_id_twice_in_one_copy_is_one_row(processor, sink, dsn):
    now = datetime.now(timezone.utc)
    a = events(processor, payload("dup", timestamp=now - timedelta(hours=1)), payload("x-1"))
    b = events(processor, payload("dup", timestamp=now))  # the core de-duplicates a batch: build the COPY by hand
    written = sink.write(a + b)
    assert (written.inserted, written.already_there) == (2, ["dup"])
    assert sorted(stored(dsn)) == ["dup", "x-1"] and iso(stored(dsn)["dup"]) == a[0].timestamp


def test_retried_batch_inserts_nothing_new(processor, sink, dsn):
    batch = events(processor, *[payload() for _ in range(20)])
    assert sink.write(batch).inserted == 20
    retried = sink.write(batch)
    assert retried.inserted == 0 and retried.already_there == [e.message_id for e in batch]
    grown = events(processor, *[payload() for _ in range(5)])
    mixed = sink.write(batch[:10] + grown)
    assert mixed.inserted == 5 and mixed.already_there == [e.message_id for e in batch[:10]]
    assert len(stored(dsn)) == len(stored(dsn, "event_ids")) == 25


def test_discard_removes_the_row_and_the_id_so_a_retry_inserts_it(processor, sink, dsn):
    old = events(processor, payload("kept-before"))
    sink.write(old)
    batch = events(processor, payload("a"), payload("b"), payload("kept-before"))
    with sink.writing(batch) as written:
        assert written.already_there == ["kept-before"]
        written.discard({"a", "kept-before"})  # an id this transaction did not insert is left alone
    assert sorted(stored(dsn)) == sorted(stored(dsn, "event_ids")) == ["b", "kept-before"]
    retry = sink.write(batch)
    assert retry.inserted == 1 and sorted(retry.already_there) == ["b", "kept-before"]
    assert sorted(stored(dsn)) == ["a", "b", "kept-before"]


def test_an_exception_from_the_caller_rolls_everything_back(processor, sink, dsn):
    batch = events(processor, payload("r-1"), payload("r-2"))
    with pytest.raises(RuntimeError), sink.writing(batch):
        raise RuntimeError("the warehouse failed the whole batch")
    assert stored(dsn) == {} == stored(dsn, "event_ids")
    assert sink.write(batch).inserted == 2


# Inputs PostgreSQL cannot store as sent (found by feeding the core and the sink real records): a \u0000 escape
# in a context key the type does not declare — jsonb refuses it with SQLSTATE 22P05 — and a NUL inside the
# messageId, which no text column can hold (psycopg refuses to send it). The core strips control characters
# from keys and messageIds as it does from every string value, so they are delivered, cleaned.
NUL_INPUTS = {
    "context key": (lambda: payload("nul-key", context={"campaign\u0000": "spring"}), "nul-key"),
    "nested context key": (lambda: payload("nul-nested", context={"extra": {"k\u0000": 1}}), "nul-nested"),
    "messageId": (lambda: payload("nul\u0000id"), "nulid"),
}


def test_nul_characters_postgres_cannot_hold_are_cleaned_by_the_core_and_delivered(processor, sink, dsn):
    result = processor.process([record(make(), seq=str(i)) for i, (make, _) in enumerate(NUL_INPUTS.values())])
    assert result.rejections == [] and [e.message_id for e in result.events] == [mid for _, mid in
                                                                              NUL_INPUTS.values()]
    written = sink.write(result.events)
    assert written.inserted == 3 and written.refused == {}
    with psycopg.connect(dsn) as conn:
        contexts = dict(conn.execute("SELECT message_id, context FROM events").fetchall())
    assert "campaign" in contexts["nul-key"] and contexts["nul-nested"]["extra"] == {"k": 1}


def test_refused_values_built_by_hand_are_isolated(processor, sink, dsn):
    """The same isolation whatever the core lets through: an event whose context jsonb cannot hold."""
    good = events(processor, payload("fine-1"), payload("fine-2"))
    bad = copy.copy(good[0])
    bad.message_id, bad._context = "hand-made", {"a\x00b": 1}
    written = sink.write([good[0], bad, good[1]])
    assert written.inserted == 2 and list(written.refused) == ["hand-made"]
    assert "column context" in written.refused["hand-made"]
    assert sorted(stored(dsn)) == ["fine-1", "fine-2"]


def test_statement_timeout_is_set_on_the_connection_and_a_stuck_statement_is_an_outage(processor, dsn):
    default = PostgresSink(dsn)
    assert default._connection().execute("SHOW statement_timeout").fetchone()[0] == "30s"
    default.close()
    sink = PostgresSink(dsn, statement_timeout=0.5)
    batch = events(processor, payload())
    with psycopg.connect(dsn) as locker:  # holds the id table: every insert waits on it
        locker.execute("LOCK TABLE event_ids IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(SinkError) as raised:
            sink.write(batch)
        assert time.monotonic() - started < 10
        locker.rollback()
    assert type(raised.value) is SinkUnavailable and "statement timeout" in str(raised.value)
    assert sink.write(batch).inserted == 1  # a new connection
    sink.close()


def test_a_missing_table_is_not_bad_data(processor, dsn):
    sink = PostgresSink(dsn, ids_table="no_such_table")
    with pytest.raises(SinkError) as raised:
        sink.write(events(processor, payload()))
    assert type(raised.value) is SinkUnavailable and "UndefinedTable" in str(raised.value)
    sink.close()


def test_postgres_stopped_is_an_outage_and_the_same_sink_writes_after_the_restart(processor, server, sink, dsn):
    assert sink.write(events(processor, payload("before"))).inserted == 1
    stop_immediately(server)
    try:
        with pytest.raises(SinkError) as cut:  # the open connection dies under the sink
            sink.write(events(processor, payload("during-1")))
        with pytest.raises(SinkError) as refused:  # and nothing listens any more
            sink.write(events(processor, payload("during-2")))
    finally:
        server.start()  # same data directory, same port
    assert type(cut.value) is SinkUnavailable and type(refused.value) is SinkUnavailable
    assert cut.value.failed_sequence_numbers is None  # the whole batch waits
    retried = sink.write(events(processor, payload("during-1"), payload("during-2"), payload("before")))
    assert (retried.inserted, retried.already_there) == (2, ["before"])
    assert sorted(stored(dsn)) == ["before", "during-1", "during-2"]


def test_server_gone_before_the_commit_is_an_outage_and_nothing_is_half_written(processor, server, sink, dsn):
    batch = events(processor, payload("c-1"), payload("c-2"))
    sink.write(events(processor, payload("warm")))
    try:
        with pytest.raises(SinkError) as raised:
            with sink.writing(batch) as written:
                assert written.inserted == 2
                stop_immediately(server)  # while the caller delivers to Firehose
    finally:
        server.start()
    assert type(raised.value) is SinkUnavailable
    assert sorted(stored(dsn)) == ["warm"]
    assert sink.write(batch).inserted == 2


def test_a_dropped_partition_is_created_again(processor, sink, dsn):
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    sink.write(events(processor, payload("y-1", timestamp=yesterday)))
    with psycopg.connect(dsn, autocommit=True) as conn:  # retention drops the day (and its ids)
        conn.execute(f"DROP TABLE events_{yesterday:%Y%m%d}")
        conn.execute("DELETE FROM event_ids")
    assert sink.write(events(processor, payload("y-2", timestamp=yesterday))).inserted == 1
    assert sorted(stored(dsn)) == ["y-2"]


def test_concurrent_sinks_creating_the_same_partition_both_succeed(processor, dsn):
    day = datetime.now(timezone.utc) - timedelta(days=3)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS events_{day:%Y%m%d}")
    sinks = [PostgresSink(dsn) for _ in range(2)]
    batches = [events(processor, payload(f"p-{i}", timestamp=day)) for i in range(2)]
    outcomes: list = [None, None]

    def write(i: int) -> None:
        try:
            outcomes[i] = sinks[i].write(batches[i]).inserted
        except Exception as exc:  # noqa: BLE001 - reported below
            outcomes[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in sinks:
        s.close()
    assert outcomes == [1, 1]


def test_migration_backfills_ids_and_keeps_the_copy_received_first(server, tmp_path):
    name = f"mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = server.dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        before = tmp_path / "before"
        before.mkdir()
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if path.stem < "0003":
                (before / path.name).write_text(path.read_text())
        migrate(dsn, before)
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE events_20260101 PARTITION OF events "
                         "FOR VALUES FROM ('2026-01-01') TO ('2026-01-03')")
            row = ("Lead", 1, "{}", "{}")
            for message_id, event_time, received_at in [
                    ("twice", "2026-01-02T10:00:00Z", "2026-01-02T10:00:05Z"),  # re-sent later with another time
                    ("twice", "2026-01-01T09:00:00Z", "2026-01-01T09:00:01Z"),  # received first: kept
                    ("once", "2026-01-01T12:00:00Z", "2026-01-01T12:00:00Z")]:
                conn.execute("INSERT INTO events (message_id, event_time, received_at, event_type, schema_version, "
                             "context, properties) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                             (message_id, event_time, received_at, *row))
        assert migrate(dsn)[:1] == ["0003_event_ids"]  # then the later ones
        rows, ids = stored(dsn), stored(dsn, "event_ids")
        assert rows == ids and sorted(rows) == ["once", "twice"]
        assert iso(rows["twice"]) == "2026-01-01T09:00:00.000Z"
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")



def test_a_rotated_password_is_read_again_after_the_login_is_refused(server, dsn, stage, processor):
    """Aurora rotates its managed password: a consumer whose connection drops logs in with the cached one, is
    refused (an outage: the batch waits), reads the secret again and carries on. Real parts: PostgreSQL asks
    this role for its password (scram), the secret lives in moto's Secrets Manager."""
    import orjson as json

    from handlers.core.aws import client
    from handlers.core.config import Env
    from handlers.core.secrets import DatabaseUrl, Secrets

    hba = server.data / "pg_hba.conf"
    hba.write_text("host all rotated_user 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("DROP ROLE IF EXISTS rotated_user")
        # privileges are not the point here (the sink creates day partitions, which takes the table's owner)
        conn.execute("CREATE ROLE rotated_user LOGIN SUPERUSER PASSWORD 'first-password'")
    secrets_manager = client("secretsmanager")
    secret = {"username": "rotated_user", "password": "first-password", "host": "127.0.0.1", "port": server.port,
              "dbname": "postgres"}
    arn = secrets_manager.create_secret(Name=f"aurora-{uuid.uuid4().hex[:8]}",
                                        SecretString=json.dumps(secret).decode())["ARN"]
    provider = DatabaseUrl(Env({"DATABASE_SECRET_ARN": arn, "DATABASE_SSLMODE": "disable"}),
                           Secrets(ttl_seconds=3600), min_interval=0)
    rotating = PostgresSink(provider)
    try:
        assert rotating.write(events(processor, payload("before-rotation"))).inserted == 1
        with psycopg.connect(dsn, autocommit=True) as conn:  # the rotation, and the connection dropped
            conn.execute("ALTER ROLE rotated_user PASSWORD 'second-password'")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'rotated_user'")
        secrets_manager.put_secret_value(SecretId=arn, SecretString=json.dumps(
            {**secret, "password": "second-password"}).decode())
        batch = events(processor, payload("after-rotation"))
        attempts = []
        for _ in range(3):  # the dropped connection, then the refused login, then the new password
            try:
                attempts.append(rotating.write(batch).inserted)
                break
            except SinkUnavailable as exc:
                attempts.append(str(exc))
        assert any("password authentication failed" in str(a) for a in attempts[:-1]), attempts
        assert attempts[-1] == 1
        assert set(stored(dsn)) >= {"before-rotation", "after-rotation"}
    finally:
        rotating.close()
        hba.write_text(hba.read_text().split("\n", 1)[1])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
