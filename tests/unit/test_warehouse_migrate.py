"""`letgo warehouse migrate`: every statement once, resumable, placeholders filled, load specs published.

Redshift cannot run here, so the runner is an in-memory stand-in that records statements and keeps the
migration ledger the way the cluster would (the statements themselves are parsed as Redshift SQL in
test_warehouse_ddl.py); S3 is a dict (no I/O in this tier; the loader reads real S3 in the functional tier).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from letgo.ops.redshift_migrations import LEDGER, MigrationError, Migrator, split_statements, substitute

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = REPO / "migrations" / "redshift"
VALUES = {"bucket": "letgo-processed-events-1-dev", "glue_database": "letgo_events_dev",
          "spectrum_role_arn": "arn:aws:iam::1:role/spectrum"}


class LedgerRedshift:
    """Records statements; keeps the ledger rows; fails on the n-th migration statement when asked."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.statements: list[str] = []
        self.ledger: list[tuple[str, int]] = []
        self.fail_at = fail_at

    def run(self, sql):
        insert = re.fullmatch(rf"INSERT INTO {LEDGER} \(name, statement\) VALUES \('([^']+)', (\d+)\)", sql)
        if insert:
            self.ledger.append((insert[1], int(insert[2])))
        elif not sql.startswith(f"CREATE TABLE IF NOT EXISTS {LEDGER}"):
            if self.fail_at is not None and len(self.statements) == self.fail_at:
                self.fail_at = None
                raise RuntimeError("ERROR: Spectrum catalog unavailable")
            self.statements.append(sql)

    def rows(self, sql):
        done: dict[str, int] = {}
        for name, n in self.ledger:
            done[name] = max(done.get(name, 0), n)
        return [[name, n] for name, n in done.items()]


class DictS3:
    def __init__(self):
        self.objects = {}

    def put_object(self, Bucket, Key, Body, ContentType):  # noqa: N803 - boto3's names
        self.objects[(Bucket, Key)] = Body


def _migrator(runner, directory=MIGRATIONS, s3=None):
    return Migrator(runner, s3=s3 or DictS3(), bucket=VALUES["bucket"], glue_database=VALUES["glue_database"],
                    spectrum_role_arn=VALUES["spectrum_role_arn"], directory=directory, say=lambda _m: None)


def test_split_statements_yields_each_generated_statement_without_comments():
    text = (MIGRATIONS / "0001_initial.sql").read_text()
    statements = split_statements(text)
    assert len(statements) == text.count(";\n")
    assert not any(s.startswith("--") or s.endswith(";") for s in statements)


def test_substitute_fills_every_placeholder_and_refuses_leftovers():
    sql = substitute("LOCATION 's3://{bucket}/events/' IAM_ROLE '{spectrum_role_arn}' DATABASE '{glue_database}'",
                     VALUES)
    assert "{" not in sql and VALUES["bucket"] in sql
    with pytest.raises(KeyError):
        substitute("{bucket}", {"bucket": "b"})


def test_migrate_applies_every_statement_once_then_nothing():
    runner = LedgerRedshift()
    report = _migrator(runner).apply()
    expected = sum(len(split_statements(p.read_text())) for p in MIGRATIONS.glob("0*.sql"))
    assert report.statements == len(runner.statements) == expected
    assert not any(re.search(r"\{(bucket|glue_database|spectrum_role_arn)\}", s) for s in runner.statements)
    assert _migrator(runner).apply().statements == 0


def test_migrate_resumes_a_failed_file_at_its_first_unapplied_statement():
    runner = LedgerRedshift(fail_at=5)
    with pytest.raises(RuntimeError, match="Spectrum catalog"):
        _migrator(runner).apply()
    assert len(runner.statements) == 5
    _migrator(runner).apply()
    clean = LedgerRedshift()
    _migrator(clean).apply()
    assert runner.statements == clean.statements  # each statement exactly once, in file order


def test_migrate_refuses_an_applied_file_that_was_shortened(tmp_path):
    shutil.copytree(MIGRATIONS, tmp_path / "m")
    runner = LedgerRedshift()
    _migrator(runner, tmp_path / "m").apply()
    path = next((tmp_path / "m").glob("0001_*.sql"))
    path.write_text(path.read_text().rsplit(";\n", 2)[0] + ";\n")
    with pytest.raises(MigrationError, match="never edited"):
        _migrator(runner, tmp_path / "m").apply()


def test_migrate_publishes_a_load_spec_and_jsonpaths_per_event_type_of_the_state():
    s3 = DictS3()
    _migrator(LedgerRedshift(), s3=s3).apply()
    state = json.loads((MIGRATIONS / "state.json").read_text())
    specs = {key: json.loads(body) for (bucket, key), body in s3.objects.items() if key.startswith("warehouse/load/")}
    assert sorted(specs) == [f"warehouse/load/{name}.json" for name in sorted(state["types"])]
    lead = specs["warehouse/load/Lead.json"]
    assert lead["migration"] == state["last_migration"] and lead["cluster_table"] == "events.lead"
    paths = json.loads(s3.objects[(VALUES["bucket"], "warehouse/jsonpaths/lead.json")])["jsonpaths"]
    assert lead["jsonpaths"] == f"s3://{VALUES['bucket']}/warehouse/jsonpaths/lead.json"
    assert len(paths) == len(lead["columns"]) and paths[0] == "$.messageId"
