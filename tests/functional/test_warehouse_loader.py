"""The warehouse loader against real S3 (moto server): load specs published by `migrate`, EventBridge events in.

Redshift itself cannot run here (moto's Data API accepts SQL without executing it), so the cluster is a
recorder of the statements the loader submits; what those statements do is checked on DuckDB in
tests/unit/test_warehouse_loader.py and parsed as Redshift SQL in tests/unit/test_warehouse_ddl.py.
"""
from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from handlers.core.aws import client
from handlers.warehouse.loader import LOAD_SPECS_PREFIX, Loader, LoadSpecMissing
from letgo.ops.redshift_migrations import Migrator
from tests.conftest import REPO

pytestmark = pytest.mark.functional

TODAY = date(2026, 11, 26)
ROLE = "arn:aws:iam::123456789012:role/letgo-spectrum"


class RecordingRedshift:
    def __init__(self):
        self.single: list[str] = []
        self.transactions: list[list[str]] = []

    def run(self, sql):
        self.single.append(sql)

    def rows(self, sql):
        return []

    def run_transaction(self, statements):
        self.transactions.append(list(statements))


def object_created(bucket: str, key: str) -> dict:
    """The event EventBridge delivers for a new object (source aws.s3, detail-type "Object Created")."""
    return {"version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"version": "0", "bucket": {"name": bucket}, "object": {"key": key, "size": 10}}}


@pytest.fixture
def published(stage):
    bucket = stage.names.processed_bucket
    Migrator(RecordingRedshift(), s3=client("s3"), bucket=bucket, glue_database="letgo_events_local",
             spectrum_role_arn=ROLE, directory=REPO / "migrations" / "redshift", say=lambda _m: None).apply()
    return bucket


def test_loader_registers_the_partition_and_loads_a_recent_object_in_one_transaction(published):
    redshift = RecordingRedshift()
    loader = Loader(redshift, bucket=published, role_arn=ROLE, today=lambda: TODAY)
    key = f"events/type=ItemListed/dt={TODAY - timedelta(days=1)}/letgo-processed-1-2026-11-25-10-00-00-abc.gz"
    result = loader.handle(object_created(published, key))
    assert result["results"] == [{"key": key, "event_type": "ItemListed", "day": "2026-11-25", "partition": True,
                                  "loaded": True}]
    [partition] = redshift.single
    assert partition.startswith("ALTER TABLE history.item_listed ADD IF NOT EXISTS PARTITION (dt='2026-11-25')")
    [transaction] = redshift.transactions
    assert f"FROM 's3://{published}/{key}'" in transaction[2]
    assert f"FORMAT AS JSON 's3://{published}/warehouse/jsonpaths/item_listed.json'" in transaction[2]
    assert "prop_language" in transaction[2] and "location_lat" in transaction[2]  # the spec's columns


def test_loader_only_registers_history_for_days_older_than_the_cluster_window(published):
    redshift = RecordingRedshift()
    loader = Loader(redshift, bucket=published, role_arn=ROLE, cluster_days=30, today=lambda: TODAY)
    old = TODAY - timedelta(days=31)
    result = loader.handle({"action": "load", "key": f"events/type=Lead/dt={old}/late-arrival.gz"})
    assert result["results"][0]["loaded"] is False
    assert len(redshift.single) == 1 and redshift.transactions == []


def test_loader_fails_loudly_for_a_type_whose_migration_was_not_applied(published):
    client("s3").delete_object(Bucket=published, Key=f"{LOAD_SPECS_PREFIX}Lead.json")
    loader = Loader(RecordingRedshift(), bucket=published, role_arn=ROLE, today=lambda: TODAY)
    with pytest.raises(LoadSpecMissing, match="letgo warehouse migrate"):
        loader.handle(object_created(published, f"events/type=Lead/dt={TODAY}/x.gz"))


def test_loader_skips_objects_outside_the_events_layout_without_failing(published):
    redshift = RecordingRedshift()
    loader = Loader(redshift, bucket=published, role_arn=ROLE, today=lambda: TODAY)
    result = loader.handle(object_created(published, "events/README.txt"))
    assert "skipped" in result["results"][0] and redshift.single == []


def test_expire_deletes_old_cluster_rows_of_every_published_type(published):
    redshift = RecordingRedshift()
    loader = Loader(redshift, bucket=published, role_arn=ROLE, cluster_days=30, today=lambda: TODAY)
    expired = loader.handle({"action": "expire"})["expired"]
    types = sorted(p.stem for p in (REPO / "event_types").glob("[A-Z]*.yaml"))
    assert len(expired) == len(types) == len(redshift.single)
    assert all("DATEADD(day, -31, TRUNC(GETDATE()))" in sql for sql in redshift.single)


def test_loader_picks_up_a_republished_spec_after_its_cache_expires(published):
    now = [0.0]
    loader = Loader(RecordingRedshift(), bucket=published, role_arn=ROLE, today=lambda: TODAY, clock=lambda: now[0])
    assert loader.spec("Lead").migration != "0099_lead_v2"
    s3 = client("s3")
    key = f"{LOAD_SPECS_PREFIX}Lead.json"
    document = json.loads(s3.get_object(Bucket=published, Key=key)["Body"].read())
    s3.put_object(Bucket=published, Key=key, Body=json.dumps({**document, "migration": "0099_lead_v2"}).encode())
    assert loader.spec("Lead").migration != "0099_lead_v2"  # still cached
    now[0] += loader.spec_ttl_seconds + 1
    assert loader.spec("Lead").migration == "0099_lead_v2"


def test_the_deployed_loader_submits_its_statements_as_its_own_database_user(published):
    """The loader built from the environment the redshift layer gives it (REDSHIFT_DB_USER, no secret), against
    moto's Data API: the statement moto recorded names DbUser letgo_loader and no SecretArn. (moto executes no
    SQL — its statements stay STARTED, so the loader's wait times out after its one-second budget — and has no
    BatchExecuteStatement, so the day is one older than the cluster window: the partition statement only; the
    transaction's call shape is checked with botocore's Stubber in tests/unit/test_warehouse_loader.py.)"""
    from handlers.warehouse.loader import build_loader
    from handlers.warehouse.redshift_data import StatementTimedOut

    loader = build_loader({"CLUSTER_ID": "letgo-warehouse-local", "DATABASE": "warehouse",
                           "REDSHIFT_DB_USER": "letgo_loader", "PROCESSED_BUCKET": published, "COPY_ROLE_ARN": ROLE,
                           "STATEMENT_TIMEOUT_SECONDS": "1"})
    loader.redshift.poll_seconds = 0.1
    submitted = []
    loader.redshift.client.meta.events.register(
        "after-call.redshift-data.ExecuteStatement", lambda parsed, **_: submitted.append(parsed["Id"]))
    old = date.today() - timedelta(days=40)
    with pytest.raises(StatementTimedOut):
        loader.handle({"action": "load", "key": f"events/type=Lead/dt={old}/late-arrival.gz"})
    [statement_id] = submitted
    recorded = loader.redshift.client.describe_statement(Id=statement_id)
    assert recorded["QueryString"].startswith("ALTER TABLE history.lead ADD IF NOT EXISTS PARTITION")
    assert (recorded["ClusterIdentifier"], recorded["Database"]) == ("letgo-warehouse-local", "warehouse")
    assert recorded["DbUser"] == "letgo_loader"
    assert not recorded.get("SecretArn")
