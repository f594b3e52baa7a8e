"""Redshift schema migrations: apply ``migrations/redshift/`` to a stage's cluster, publish what the loader needs.

``letgo warehouse migrate --stage DEV`` is the one way DDL reaches a cluster (after ``make deploy``):

1. reads the stage's stack outputs (cluster, database, the Redshift-managed admin secret, the Spectrum role,
   the processed bucket: :class:`letgo.ops.warehouse.StageWarehouse`) — nothing to type, nothing secret on the
   command line;
2. applies every migration file not yet applied, statement by statement through the Data API (Redshift
   refuses ``CREATE EXTERNAL TABLE`` and ``ALTER`` on external tables inside a transaction block, so a file
   cannot be atomic); ``public.letgo_migrations`` records each statement as it succeeds, so a file that
   failed half-way resumes at its first unapplied statement once the cause is fixed — never re-running one
   that succeeded;
3. publishes, for every event type of ``state.json`` (the state the migrations lead to), the jsonpaths file
   and the *load spec* under ``s3://<processed>/warehouse/`` — so the loader Lambda starts loading a new
   type the moment its tables exist, and never loads columns the cluster does not have yet.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from handlers.schema.event_types import EventType
from handlers.warehouse.loader import LOAD_SPECS_PREFIX
from letgo.warehouse import ddl

PLACEHOLDERS = ("bucket", "glue_database", "spectrum_role_arn")
LEDGER = "public.letgo_migrations"
STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")


class StatementRunner(Protocol):
    def run(self, sql: str) -> Any: ...

    def rows(self, sql: str) -> list[list[Any]]: ...


class MigrationError(Exception):
    """A migration cannot be applied as written (unknown placeholder, edited file, missing state)."""


def split_statements(text: str) -> list[str]:
    """The statements of a generated file (comment lines dropped; statements end with ``;`` at a line end)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in STATEMENT_END.split(body) if s.strip()]


def substitute(sql: str, values: Mapping[str, str]) -> str:
    for name in PLACEHOLDERS:
        sql = sql.replace("{" + name + "}", values[name])
    left = re.findall(r"\{(bucket|glue_database|spectrum_role_arn)\}", sql)
    if left:
        raise MigrationError(f"placeholders left after substitution: {sorted(set(left))}")
    return sql


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class MigrationFile:
    name: str
    statements: tuple[str, ...]


def migration_files(directory: Path) -> list[MigrationFile]:
    return [MigrationFile(path.stem, tuple(split_statements(path.read_text(encoding="utf-8"))))
            for path in sorted(Path(directory).glob("[0-9][0-9][0-9][0-9]_*.sql"))]


@dataclass
class MigrateReport:
    applied: list[str] = field(default_factory=list)         # files applied (fully) by this run
    statements: int = 0                                        # statements run by this run
    specs: list[str] = field(default_factory=list)            # event types whose load spec was published


class Migrator:
    def __init__(self, runner: StatementRunner, *, s3: Any, bucket: str, glue_database: str,
                 spectrum_role_arn: str, directory: Path, say: Callable[[str], None] = print) -> None:
        self.runner, self.s3, self.bucket, self.directory, self.say = runner, s3, bucket, Path(directory), say
        self.values = {"bucket": bucket, "glue_database": glue_database, "spectrum_role_arn": spectrum_role_arn}

    def applied(self) -> dict[str, int]:
        """Migration name -> statements already applied (a file is done when that equals its length)."""
        self.runner.run(f"CREATE TABLE IF NOT EXISTS {LEDGER} (name VARCHAR(256) NOT NULL, "
                        f"statement INTEGER NOT NULL, applied_at TIMESTAMP DEFAULT GETDATE())")
        return {str(name): int(done) for name, done in
                self.runner.rows(f"SELECT name, MAX(statement) FROM {LEDGER} GROUP BY name")}

    def pending(self) -> list[tuple[MigrationFile, int]]:
        done = self.applied()
        files = migration_files(self.directory)
        for migration in files:
            if done.get(migration.name, 0) > len(migration.statements):
                raise MigrationError(f"{migration.name}: the cluster applied {done[migration.name]} statements but "
                                     f"the file has {len(migration.statements)}: applied migrations are never edited")
        return [(m, done.get(m.name, 0)) for m in files if done.get(m.name, 0) < len(m.statements)]

    def apply(self) -> MigrateReport:
        report = MigrateReport()
        plan = self.pending()
        total = sum(len(m.statements) - start for m, start in plan)
        if not plan:
            self.say("migrations: the cluster is up to date")
        for migration, start in plan:
            self.say(f"migration {migration.name}: statements {start + 1}..{len(migration.statements)}"
                     + (" (resuming)" if start else ""))
            for index in range(start, len(migration.statements)):
                self.runner.run(substitute(migration.statements[index], self.values))
                self.runner.run(f"INSERT INTO {LEDGER} (name, statement) VALUES "
                                f"({_literal(migration.name)}, {index + 1})")
                report.statements += 1
                self.say(f"  [{report.statements}/{total}] {migration.statements[index].splitlines()[0][:90]}")
            report.applied.append(migration.name)
        report.specs = self.publish_load_specs()
        return report

    def publish_load_specs(self) -> list[str]:
        """The jsonpaths file and load spec of every type of ``state.json`` (what the applied DDL created)."""
        path = self.directory / ddl.STATE_FILE
        if not path.exists():
            raise MigrationError(f"{path} is missing: generate migrations with `python -m letgo.warehouse.ddl`")
        document = json.loads(path.read_text(encoding="utf-8"))
        last = document.get("last_migration", "?")
        names = []
        for name, entry in sorted(document["types"].items()):
            event_type = EventType(name=name, version=entry["version"], description="",
                                   filename=f"{name}.yaml", properties=entry["properties"])
            spec = ddl.load_spec(event_type, self.bucket, last)
            self.s3.put_object(Bucket=self.bucket, Key=ddl.jsonpaths_key(event_type),
                               Body=json.dumps(ddl.jsonpaths(event_type)).encode(), ContentType="application/json")
            self.s3.put_object(Bucket=self.bucket, Key=f"{LOAD_SPECS_PREFIX}{name}.json",
                               Body=json.dumps(spec, indent=1).encode(), ContentType="application/json")
            names.append(name)
        self.say(f"load specs published for {len(names)} event types (s3://{self.bucket}/{LOAD_SPECS_PREFIX})")
        return names
