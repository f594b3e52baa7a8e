"""A deployed stage's warehouse: migrate its Redshift cluster, (re)load a day's delivered objects.

``letgo warehouse migrate --stage S`` and ``letgo warehouse load --stage S --day D [--type T]``. Everything the
operations need comes from the stage's stacks (:class:`StageWarehouse`); the loads go through the very
:class:`~handlers.warehouse.loader.Loader` the loader Lambda runs (idempotent: a re-load replaces the rows).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

from handlers.warehouse.loader import Loader, parse_key
from handlers.warehouse.redshift_data import RedshiftData, Target
from letgo import REPO_ROOT
from letgo.ops.redshift_migrations import MigrateReport, Migrator
from letgo.ops.stacks import stack_outputs
from letgo.warehouse.ddl import CLUSTER_DAYS

MIGRATIONS_DIR = REPO_ROOT / "migrations" / "redshift"


@dataclass(frozen=True)
class StageWarehouse:
    """A deployed stage's warehouse, from its stacks' outputs."""

    cluster_id: str
    database: str
    secret_arn: str
    spectrum_role_arn: str
    glue_database: str
    processed_bucket: str

    @classmethod
    def from_stacks(cls, cloudformation: Any, stage: str) -> "StageWarehouse":
        redshift = stack_outputs(cloudformation, "redshift", stage)
        storage = stack_outputs(cloudformation, "storage", stage)
        return cls(redshift["ClusterIdentifier"], redshift["DatabaseName"], redshift["MasterSecretArn"],
                   redshift["SpectrumRoleArn"], redshift["GlueDatabase"], storage["ProcessedBucketName"])

    def redshift(self) -> RedshiftData:
        """The cluster through the Data API, as the Redshift-managed admin secret."""
        return RedshiftData(Target(self.cluster_id, self.database, secret_arn=self.secret_arn))


def migrate(stage: StageWarehouse, *, s3: Any, redshift: RedshiftData | None = None,
            directory: Path = MIGRATIONS_DIR) -> MigrateReport:
    """Apply the pending migrations (resumable, each statement once) and publish the load specs."""
    return Migrator(redshift or stage.redshift(), s3=s3, bucket=stage.processed_bucket,
                    glue_database=stage.glue_database, spectrum_role_arn=stage.spectrum_role_arn,
                    directory=directory).apply()


@dataclass
class DayLoad:
    """The objects of one day to (re)load, found before loading (so progress can show a total)."""

    loader: Loader
    bucket: str
    day: date
    event_types: list[str]
    keys: list[str]

    def run(self, progress: Callable[[int], None] | None = None) -> int:
        for done, key in enumerate(self.keys, 1):
            self.loader.load(parse_key(self.bucket, key))
            if progress:
                progress(done)
        return len(self.keys)


def day_load(stage: StageWarehouse, day: date, *, s3: Any, event_type: str | None = None,
             redshift: RedshiftData | None = None) -> DayLoad:
    """Every object delivered on ``day`` — of one event type, or of every type with a published load spec."""
    loader = Loader(redshift or stage.redshift(), bucket=stage.processed_bucket, role_arn=stage.spectrum_role_arn,
                    cluster_days=CLUSTER_DAYS)
    types = [event_type] if event_type else [spec.event_type for spec in loader.specs()]
    return DayLoad(loader, stage.processed_bucket, day, types, delivered_keys(s3, stage.processed_bucket, types, day))


def delivered_keys(s3: Any, bucket: str, event_types: list[str], day: date) -> list[str]:
    """The objects Firehose delivered for these types on that day (``events/type=<T>/dt=<day>/``)."""
    return [o["Key"] for t in event_types
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"events/type={t}/dt={day.isoformat()}/")
            for o in page.get("Contents", [])]
