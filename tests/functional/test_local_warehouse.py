"""The local warehouse (letgo/warehouse/local.py, `letgo warehouse`) on the local stage's real Firehose output.

Traffic goes through the real event path (Kinesis -> consumer -> Firehose on moto + PostgreSQL); the
materialised tree must hold exactly what PostgreSQL holds, per event type and day, however often it is
rebuilt and however often Firehose delivered a record.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import psycopg
import pytest

from handlers.core.aws import client
from letgo import cli, stage_control
from letgo.traffic import generate
from letgo.warehouse import ddl
from letgo.warehouse.local import LocalWarehouse, materialise, repl, snake_case
from tests.conftest import REPO
from tests.stage_kit import send

pytestmark = pytest.mark.functional


def pg(stage, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(stage.postgres.dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # event_time::date is the UTC day, as dt is
        return conn.execute(sql, params).fetchall()


def pg_counts(stage) -> dict[tuple[str, str], int]:
    rows = pg(stage, "SELECT event_type, event_time::date, count(*) FROM events GROUP BY 1, 2")
    return {(event_type, day.isoformat()): count for event_type, day, count in rows}


def warehouse_counts(warehouse: LocalWarehouse) -> dict[tuple[str, str], int]:
    counts = {}
    for view, event_type in warehouse.views.items():
        for day, count in warehouse.query(f"SELECT dt, count(*) FROM events.{view} GROUP BY 1")[1]:
            counts[(event_type, day.isoformat())] = count
    return counts


def part_files(target: Path) -> dict[str, bytes]:
    return {p.relative_to(target).as_posix(): p.read_bytes() for p in sorted((target / "events").rglob("*.jsonl"))}


@pytest.fixture
def traffic(stage):
    """GIVEN 2,000 generated units (valid, duplicate, malformed) stamped across a UTC midnight, drained."""
    midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    plan = generate(2000, seed=5, now=midnight + timedelta(minutes=30))
    send(stage, [record.data for record in plan.records])
    stage.mapping.drain()
    assert sum(count for (_, count) in pg(stage, "SELECT 1, count(*) FROM events")) == plan.expected_valid
    return stage


def test_counts_per_type_and_day_equal_postgres_and_rebuilds_change_nothing(traffic, tmp_path):
    s3, bucket = client("s3"), traffic.names.processed_bucket
    expected = pg_counts(traffic)
    assert len({day for _, day in expected}) == 2, "the traffic should straddle midnight"

    written = materialise(s3, bucket, tmp_path)
    assert written == sum(expected.values())
    files = part_files(tmp_path)
    for name in files:  # the AWS layout, Firehose dynamic partitioning's
        event_type, day, part = name.split("/")[1:]
        assert event_type.startswith("type=") and day.startswith("dt=") and part.startswith("part-")
    with LocalWarehouse(tmp_path) as warehouse:
        assert warehouse_counts(warehouse) == expected
        all_events = warehouse.query("SELECT type, dt, count(*) FROM events.all_events GROUP BY 1, 2")[1]
        assert {(t, d.isoformat()): n for t, d, n in all_events} == expected
        assert warehouse.query("SELECT count(DISTINCT message_id) = count(*) FROM events.all_events")[1] == [(True,)]

    # Firehose is at-least-once: the same PutRecordBatch delivered twice must not count twice
    key = next(item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="events/")["Contents"])
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=f"{key}-redelivered", Body=body)
    for _ in range(2):  # re-running overwrites, never duplicates
        assert materialise(s3, bucket, tmp_path) == written
        assert part_files(tmp_path) == files
        with LocalWarehouse(tmp_path) as warehouse:
            assert warehouse_counts(warehouse) == expected
    assert not [p for p in tmp_path.iterdir() if p.name != "events"], "no staging folders left behind"


def test_property_columns_are_typed_as_in_the_event_type_yaml(traffic, tmp_path, catalog):
    materialise(client("s3"), traffic.names.processed_bucket, tmp_path)
    with LocalWarehouse(tmp_path) as warehouse:
        [(average,)] = warehouse.query("SELECT avg(price) FROM events.item_listed")[1]
        [(pg_average,)] = pg(traffic, "SELECT avg((properties->>'price')::float) FROM events "
                                      "WHERE event_type = 'ItemListed'")
        assert average == pytest.approx(pg_average, rel=1e-12)

        types = dict(warehouse.query("SELECT column_name, data_type FROM information_schema.columns "
                                     "WHERE table_schema = 'events' AND table_name = 'item_listed'")[1])
        assert {name: types[name] for name in ("message_id", "event_time", "received_at", "user_id",
                                               "anonymous_id", "schema_version", "dt", "context")} == {
            "message_id": "VARCHAR", "event_time": "TIMESTAMP", "received_at": "TIMESTAMP", "user_id": "VARCHAR",
            "anonymous_id": "VARCHAR", "schema_version": "INTEGER", "dt": "DATE", "context": "JSON"}
        assert {name: types[name] for name in ("price", "image_count", "shipping_available", "title", "category",
                                               "location_lat", "location_lon")} == {
            "price": "DOUBLE", "image_count": "BIGINT", "shipping_available": "BOOLEAN", "title": "VARCHAR",
            "category": "VARCHAR", "location_lat": "DOUBLE", "location_lon": "DOUBLE"}
        assert "location" not in types
        for view, event_type in warehouse.views.items():  # the Redshift table's columns (+ the partition dt)
            local = [name for (name,) in warehouse.query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'events' "
                f"AND table_name = '{view}' ORDER BY ordinal_position")[1]]
            assert [c for c in local if c != "dt"] == [c.name for c in ddl.columns(catalog.types[event_type])]
        assert "prop_language" in types and "language" not in types  # LANGUAGE is reserved in Redshift
        search = dict(warehouse.query("SELECT column_name, data_type FROM information_schema.columns "
                                      "WHERE table_schema = 'events' AND table_name = 'search'")[1])
        assert search["filters"] == "JSON" and search["results_count"] == "BIGINT"

        # the values are the ones PostgreSQL holds, column by column
        row = warehouse.query("SELECT message_id, price, location_lat, location_lon, event_time, "  # Redshift SQL:
                              "context.app.version FROM events.item_listed ORDER BY message_id LIMIT 1")[1][0]  # SUPER
        assert warehouse.query("SELECT context->>'$.app.version' FROM events.item_listed ORDER BY message_id LIMIT 1",
                               dialect="duckdb")[1][0][0] == row[5]  # DuckDB's JSON path, untranslated
        [pg_row] = pg(traffic, "SELECT message_id, (properties->>'price')::float, "
                               "(properties->'location'->>'lat')::float, (properties->'location'->>'lon')::float, "
                               "event_time, context->'app'->>'version' FROM events WHERE message_id = %s", (row[0],))
        assert row[:4] == pg_row[:4] and row[5] == pg_row[5]
        assert row[4].replace(tzinfo=timezone.utc) == pg_row[4]


def test_every_event_type_has_a_view_even_without_data(tmp_path):
    with LocalWarehouse(tmp_path / "nothing-yet") as warehouse:
        views = {name for (name,) in warehouse.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'events'")[1]}
        assert views == set(warehouse.views) | {"all_events"}
        assert {"item_listed", "lead", "user_signed_up", "app_opened"} <= views
        assert warehouse.query("SELECT dt, count(*) FROM events.lead GROUP BY 1")[1] == []
        assert warehouse.query("SELECT avg(price) FROM events.item_listed")[1] == [(None,)]
    assert snake_case("ItemListed") == "item_listed" and snake_case("HTTPCallMade") == "http_call_made"


def test_cli_sync_query_and_prompt(traffic, tmp_path, monkeypatch, capsys):
    stage_file = tmp_path / "stage.json"  # what `letgo stage up` would write: this stage's endpoint
    keys = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
    stage_file.write_bytes(orjson.dumps({"pid": os.getpid(), "stream": traffic.names.stream,
                                         "env": {k: os.environ[k] for k in keys if k in os.environ}}))
    monkeypatch.setattr(stage_control, "STAGE_FILE", stage_file)
    target = tmp_path / "warehouse"
    assert cli.main(["warehouse", "sync", "--dir", str(target)]) == 0
    counts = pg_counts(traffic)
    assert f"materialised {sum(counts.values()):,} distinct events" in capsys.readouterr().out

    sql = "SELECT dt, count(*) AS leads FROM events.lead GROUP BY 1 ORDER BY 1"
    assert cli.main(["warehouse", "query", sql, "--dir", str(target)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["dt", "leads"] and out[-1] == "(2 rows)"
    expected = sorted((day, n) for (t, day), n in counts.items() if t == "Lead")
    assert [tuple(line.split()) for line in out[2:-1]] == [(day, str(n)) for day, n in expected]

    query_file = tmp_path / "q.sql"
    query_file.write_text("-- leads per channel\nSELECT channel, count(*) FROM events.lead GROUP BY 1 ORDER BY 1;\n")
    assert cli.main(["warehouse", "query", "--file", str(query_file), "--dir", str(target)]) == 0
    assert "channel" in capsys.readouterr().out
    assert cli.main(["warehouse", "query", "SELECT nope FROM events.lead", "--dir", str(target)]) == 1
    assert "nope" in capsys.readouterr().err

    lines = iter(["SELECT count(*)", "  AS n FROM events.all_events;", "SELECT broken;", r"\q"])
    shown: list[str] = []
    with LocalWarehouse(target, event_types=REPO / "event_types") as warehouse:
        assert repl(warehouse, read=lambda prompt: (shown.append(prompt), next(lines))[1], write=shown.append) == 1
    assert shown[1:3] == ["sql> ", " ..> "]
    assert f"{sum(counts.values())}" in shown[3] and shown[3].endswith("(1 row)")
    assert shown[5].startswith("error:")


def test_analysts_redshift_names_work_locally(tmp_path):
    """`analytics.<type>` (Redshift's union view) answers locally like `events.<type>`, in Redshift's time zone."""
    with LocalWarehouse(tmp_path) as warehouse:  # an empty tree: every view exists, empty
        assert warehouse.query("SELECT count(*) FROM analytics.lead")[1] == [(0,)]
        assert warehouse.query("SELECT count(*) FROM analytics.all_events")[1] == [(0,)]
        assert warehouse.query("SELECT current_setting('TimeZone')", dialect="duckdb")[1] == [("UTC",)]
        with pytest.raises(ValueError, match="dialect must be one of redshift, duckdb"):
            LocalWarehouse(tmp_path, dialect="postgres")


def test_the_prompt_takes_redshift_sql_and_names_what_does_not_translate(tmp_path):
    lines = iter([r"\d", "SELECT TRUNC(GETDATE()) AS today,", " DATEADD(day, -7, CURRENT_DATE) AS week_ago;",
                  "SELECT DEXP(1);", r"\q"])
    shown: list[str] = []
    with LocalWarehouse(tmp_path) as warehouse:
        assert repl(warehouse, read=lambda prompt: next(lines), write=shown.append) == 1
    assert "Redshift SQL" in shown[0]
    assert "lead" in shown[1] and "all_events" in shown[1]  # \d: the analytics views
    today = datetime.now(timezone.utc).date()
    assert str(today) in shown[2] and str(today - timedelta(days=7)) in shown[2]
    assert shown[3].startswith("error: DEXP() ") and "exp(x)" in shown[3]


def test_the_notebooks_db_api_connection(tmp_path):
    """letgo.warehouse.dbapi: what a notebook uses on both sides (redshift_connector on JupyterHub)."""
    from letgo.warehouse import dbapi

    with dbapi.connect(tmp_path) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT n, DATEADD(day, n, DATE '2026-01-30') AS day FROM (SELECT 1 AS n UNION ALL SELECT 2 "
                       "UNION ALL SELECT 3) AS t ORDER BY n")
        assert [d[0] for d in cursor.description] == ["n", "day"] and cursor.rowcount == 3
        assert cursor.fetchone() == (1, datetime(2026, 1, 31))
        assert cursor.fetchmany(5) == [(2, datetime(2026, 2, 1)), (3, datetime(2026, 2, 2))]
        assert cursor.fetchall() == [] and cursor.fetchone() is None
        with pytest.raises(dbapi.Error, match=r"DEXP\(\).*exp\(x\)"):
            cursor.execute("SELECT DEXP(1)")
        with pytest.raises(dbapi.Error, match="parameters are not supported"):
            cursor.execute("SELECT %s", (1,))
