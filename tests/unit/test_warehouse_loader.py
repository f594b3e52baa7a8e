"""The warehouse loader's pure parts: which object, which SQL, and that the SQL de-duplicates.

Redshift cannot run on this machine and moto's Data API accepts statements without executing them, so the
load transaction's de-duplication is checked by running the very same statements (transpiled by sqlglot)
on DuckDB in memory; the Data API wrapper is checked with botocore's Stubber, which validates every call
against the service model (a fault — a FAILED statement — cannot be produced otherwise).
"""
from __future__ import annotations

from datetime import date

import duckdb
import pytest
import sqlglot
from botocore.stub import Stubber

from handlers.core import aws
from handlers.warehouse.loader import (EventsObject, LoadSpec, NotAnEventObject, STAGING, load_statements,
                                       parse_key, partition_statement)
from handlers.warehouse.redshift_data import RedshiftData, StatementFailed, StatementTimedOut, Target

pytestmark = pytest.mark.unit

SPEC = LoadSpec("Lead", "events.lead", "history.lead", ("message_id", "event_time", "received_at", "price"),
                "s3://processed/warehouse/jsonpaths/lead.json", "0001_initial")


def test_parse_key_reads_type_and_day_of_a_delivered_object():
    obj = parse_key("processed", "events/type=ItemListed/dt=2026-11-25/letgo-1-2026-11-25-10-00-00-ab12.gz")
    assert (obj.event_type, obj.day) == ("ItemListed", date(2026, 11, 25))
    assert obj.partition_uri == "s3://processed/events/type=ItemListed/dt=2026-11-25/"


def test_parse_key_decodes_url_encoded_keys_of_s3_events():
    obj = parse_key("processed", "events/type%3DLead/dt%3D2026-11-25/part-1.gz")
    assert obj.key == "events/type=Lead/dt=2026-11-25/part-1.gz"


@pytest.mark.parametrize("key", ["errors/type=Lead/dt=2026-11-25/x.gz", "events/type=Lead/x.gz",
                                 "events/type=Lead/dt=2026-13-45/x.gz", "events/type=Lead/dt=2026-11-25/"])
def test_parse_key_refuses_what_is_not_a_delivered_events_object(key):
    with pytest.raises(NotAnEventObject, match="events/type=<Type>/dt=<YYYY-MM-DD>|not a date"):
        parse_key("processed", key)


def test_statements_quote_what_they_embed():
    obj = EventsObject("processed", "events/type=Lead/dt=2026-11-25/it's.gz", "Lead", date(2026, 11, 25))
    copy = load_statements(obj, SPEC, "arn:aws:iam::1:role/copy")[2]
    assert "'s3://processed/events/type=Lead/dt=2026-11-25/it''s.gz'" in copy
    assert sqlglot.parse_one(partition_statement(obj, SPEC), read="redshift")


def _run_load(db, rows):
    """The load transaction on DuckDB, with COPY replaced by inserting ``rows`` into the staging table."""
    obj = EventsObject("processed", "events/type=Lead/dt=2026-11-25/a.gz", "Lead", date(2026, 11, 25))
    lock, create, copy, delete, insert, drop = load_statements(obj, SPEC, "arn:aws:iam::1:role/copy")
    assert lock == "LOCK events.lead"  # DuckDB has no LOCK: one connection, nothing to serialise
    assert create.startswith(f"CREATE TEMP TABLE {STAGING}") and copy.startswith(f"COPY {STAGING}")
    db.execute(f"CREATE TEMP TABLE {STAGING} AS SELECT * FROM events.lead LIMIT 0")
    db.executemany(f"INSERT INTO {STAGING} VALUES (?, ?, ?, ?)", rows)
    for statement in (delete, insert, drop):
        db.execute(sqlglot.transpile(statement, read="redshift", write="duckdb")[0])


def test_load_transaction_keeps_one_row_per_message_id_across_retries_and_duplicates():
    db = duckdb.connect()
    db.execute("CREATE SCHEMA events")
    db.execute("CREATE TABLE events.lead (message_id VARCHAR, event_time TIMESTAMP, received_at TIMESTAMP, "
               "price DOUBLE)")
    db.execute("INSERT INTO events.lead VALUES ('m-0', '2026-11-24 10:00', '2026-11-24 10:00', 5)")
    rows = [("m-1", "2026-11-25 10:00", "2026-11-25 10:00:01", 10.0),
            ("m-1", "2026-11-25 10:00", "2026-11-25 10:00:09", 10.0),  # a Firehose duplicate in the same object
            ("m-2", "2026-11-25 11:00", "2026-11-25 11:00:00", 20.0)]
    _run_load(db, rows)
    first = db.execute("SELECT * FROM events.lead ORDER BY message_id").fetchall()
    _run_load(db, rows)  # the same object again: a Lambda retry or a re-drive
    again = db.execute("SELECT * FROM events.lead ORDER BY message_id").fetchall()
    assert again == first
    assert [r[0] for r in first] == ["m-0", "m-1", "m-2"]
    assert str(first[1][2]) == "2026-11-25 10:00:01"  # the first delivery wins (ORDER BY received_at)


TARGET = Target("letgo-warehouse-dev", "warehouse", secret_arn="arn:aws:secretsmanager:eu-west-1:1:secret:x")
LOADER_ENV = {"CLUSTER_ID": "letgo-warehouse-dev", "DATABASE": "warehouse", "REDSHIFT_DB_USER": "letgo_loader",
              "PROCESSED_BUCKET": "b", "COPY_ROLE_ARN": "r"}


def _stubbed(target=TARGET):
    client = aws.client("redshift-data")
    return RedshiftData(target, client, sleep=lambda _s: None), Stubber(client)


def test_redshift_data_waits_for_a_transaction_to_finish():
    """(As an operator's tool: the master secret, ``letgo warehouse migrate`` / ``load``.)"""
    redshift, stub = _stubbed()
    where = {"ClusterIdentifier": "letgo-warehouse-dev", "Database": "warehouse",
             "SecretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}
    stub.add_response("batch_execute_statement", {"Id": "s-1"}, {"Sqls": ["SELECT 1", "SELECT 2"], **where})
    stub.add_response("describe_statement", {"Id": "s-1", "Status": "STARTED"}, {"Id": "s-1"})
    stub.add_response("describe_statement", {"Id": "s-1", "Status": "FINISHED"}, {"Id": "s-1"})
    with stub:
        assert redshift.run_transaction(["SELECT 1", "SELECT 2"])["Status"] == "FINISHED"
    stub.assert_no_pending_responses()


def test_redshift_data_raises_redshifts_reason_when_a_statement_fails():
    redshift, stub = _stubbed()
    stub.add_response("execute_statement", {"Id": "s-2"})
    stub.add_response("describe_statement", {"Id": "s-2", "Status": "FAILED",
                                             "Error": 'ERROR: relation "events.lead" does not exist'})
    with stub, pytest.raises(StatementFailed, match='relation "events.lead" does not exist') as failure:
        redshift.run("DELETE FROM events.lead")
    assert failure.value.statement_id == "s-2"


def test_redshift_data_rows_reads_every_page_and_nulls():
    redshift, stub = _stubbed()
    stub.add_response("execute_statement", {"Id": "s-3"})
    stub.add_response("describe_statement", {"Id": "s-3", "Status": "FINISHED"})
    stub.add_response("get_statement_result", {"Records": [[{"stringValue": "0001_initial"}, {"longValue": 3}]],
                                               "NextToken": "t"}, {"Id": "s-3"})
    stub.add_response("get_statement_result", {"Records": [[{"stringValue": "0002_x"}, {"isNull": True}]]},
                      {"Id": "s-3", "NextToken": "t"})
    with stub:
        assert redshift.rows("SELECT 1") == [["0001_initial", 3], ["0002_x", None]]


def test_redshift_data_cancels_a_statement_that_outlives_its_budget():
    redshift, stub = _stubbed()
    redshift.timeout_seconds = 0.0
    stub.add_response("execute_statement", {"Id": "s-4"})
    stub.add_response("describe_statement", {"Id": "s-4", "Status": "STARTED"})
    stub.add_response("cancel_statement", {"Status": True}, {"Id": "s-4"})
    with stub, pytest.raises(StatementTimedOut):
        redshift.run("VACUUM events.lead")
    stub.assert_no_pending_responses()


def test_a_missing_variable_stops_the_loader_naming_it():
    from handlers.core.config import ConfigError
    from handlers.warehouse.loader import build_loader

    for name in LOADER_ENV:
        with pytest.raises(ConfigError, match=f"^{name}: is not set"):
            build_loader({**LOADER_ENV, name: ""})
    with pytest.raises(ConfigError, match="CLUSTER_DAYS"):
        build_loader({**LOADER_ENV, "CLUSTER_DAYS": "thirty"})
    with pytest.raises(ConfigError, match="^REDSHIFT_DB_USER: 'Letgo Loader' is not a Redshift user name"):
        build_loader({**LOADER_ENV, "REDSHIFT_DB_USER": "Letgo Loader"})


def test_the_loader_calls_the_data_api_as_its_own_user_never_with_a_secret():
    """What the deployed loader sends (built from the environment the redshift layer gives it, tested there in
    tests/functional/test_least_privilege_and_alarms.py): DbUser letgo_loader — the Data API then gets that
    user's temporary credentials with redshift:GetClusterCredentials — and no SecretArn, even when the old
    SECRET_ARN variable is still set. botocore's Stubber checks each call against the service model."""
    from handlers.warehouse.loader import build_loader

    loader = build_loader({**LOADER_ENV, "SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:master"})
    client = aws.client("redshift-data")
    loader.redshift._client, loader.redshift._sleep = client, lambda _s: None
    where = {"ClusterIdentifier": "letgo-warehouse-dev", "Database": "warehouse", "DbUser": "letgo_loader"}
    stub = Stubber(client)
    obj = EventsObject("processed", "events/type=Lead/dt=2026-11-25/a.gz", "Lead", date(2026, 11, 25))
    stub.add_response("execute_statement", {"Id": "s-1"}, {"Sql": partition_statement(obj, SPEC), **where})
    stub.add_response("describe_statement", {"Id": "s-1", "Status": "FINISHED"}, {"Id": "s-1"})
    stub.add_response("batch_execute_statement", {"Id": "s-2"}, {"Sqls": load_statements(obj, SPEC, "r"), **where})
    stub.add_response("describe_statement", {"Id": "s-2", "Status": "FINISHED"}, {"Id": "s-2"})
    sent = []
    client.meta.events.register("provide-client-params.redshift-data.*", lambda params, **_: sent.append(params))
    loader._specs["Lead"] = (loader._clock(), SPEC)
    loader._today = lambda: date(2026, 11, 26)
    with stub:
        assert loader.load(obj).loaded
    stub.assert_no_pending_responses()
    calls = [p for p in sent if "Sql" in p or "Sqls" in p]
    assert len(calls) == 2
    assert all(p["DbUser"] == "letgo_loader" and "SecretArn" not in p for p in calls)


def test_a_target_is_either_a_database_user_or_the_master_secret():
    assert Target("c", "d", db_user="letgo_loader").credentials() == {"DbUser": "letgo_loader"}
    assert Target("c", "d", secret_arn="arn:x").credentials() == {"SecretArn": "arn:x"}
    for wrong in ({}, {"db_user": "letgo_loader", "secret_arn": "arn:x"}):
        with pytest.raises(ValueError, match="exactly one of db_user and secret_arn"):
            Target("c", "d", **wrong)
