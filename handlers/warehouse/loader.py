"""The warehouse loader: every object Firehose delivers becomes rows in Redshift and a Spectrum partition.

Why a Lambda and not Firehose's Redshift destination: that destination loads *one* table per delivery
stream, and we have one table per event type behind a single stream partitioned by type and day
(``events/type=<Type>/dt=<day>/``). Redshift auto-copy jobs (``COPY … JOB CREATE``) would load per prefix
but cannot de-duplicate, and Firehose delivers at least once. So the processed bucket sends its
"Object Created" events to EventBridge, and a rule invokes this function for each new object:

1. register the object's day as a partition of ``history.<t>`` (``ADD IF NOT EXISTS``: Spectrum only sees
   registered partitions; idempotent, and outside a transaction block as Redshift requires);
2. when the day is still inside the cluster's window (``cluster_days``), load the object in ONE transaction:
   ``COPY`` it into a temporary table, delete the cluster rows with the same ``message_id``, insert the new
   rows once each. A retried invocation, a re-driven object or a Firehose duplicate leaves one row per
   ``message_id`` — nothing is counted twice.

What to load and how comes from the *load spec* that ``letgo warehouse migrate`` publishes next to the data
(``s3://<processed>/warehouse/load/<Type>.json``: table names, COPY column list, jsonpaths file) after it
applied the matching DDL, so the loader always matches what the cluster really has — not what the YAML in
its zip says. A type with no spec yet (its migration was not applied) fails loudly; after retries the event
lands in the function's on-failure queue, and ``letgo warehouse load`` re-drives a day once migrated.

A daily schedule invokes the same function with ``{"action": "expire"}``: cluster rows older than the
window (plus a day) are deleted; the union view reads them from Spectrum already.
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Mapping
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from handlers.core import aws
from handlers.core.config import ConfigError, Env
from handlers.warehouse.redshift_data import RedshiftData, Target

LOG = logging.getLogger(__name__)
EVENTS_KEY = re.compile(r"^events/type=(?P<type>[A-Za-z][A-Za-z0-9_]*)/dt=(?P<day>\d{4}-\d{2}-\d{2})/[^/]+$")
LOAD_SPECS_PREFIX = "warehouse/load/"
STAGING = "load_batch"


class NotAnEventObject(ValueError):
    """The key is not a delivered events object (``events/type=<Type>/dt=<YYYY-MM-DD>/<file>``)."""


class LoadSpecMissing(LookupError):
    """No load spec for the type: its warehouse migration has not been applied (``letgo warehouse migrate``)."""


@dataclass(frozen=True)
class EventsObject:
    bucket: str
    key: str
    event_type: str
    day: date

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def partition_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key.rsplit('/', 1)[0]}/"


def parse_key(bucket: str, key: str) -> EventsObject:
    """The object behind an S3 event's key (URL-decoded: S3 event keys are URL-encoded, ours hold no '+'/'%')."""
    decoded = unquote_plus(key)
    match = EVENTS_KEY.match(decoded)
    if not match:
        raise NotAnEventObject(f"s3://{bucket}/{decoded}: not under events/type=<Type>/dt=<YYYY-MM-DD>/")
    try:
        day = date.fromisoformat(match["day"])
    except ValueError:
        raise NotAnEventObject(f"s3://{bucket}/{decoded}: dt={match['day']} is not a date") from None
    return EventsObject(bucket, decoded, match["type"], day)


@dataclass(frozen=True)
class LoadSpec:
    """How one event type loads: written by ``letgo warehouse migrate`` (letgo.warehouse.ddl.load_spec)."""

    event_type: str
    cluster_table: str       # events.<t>
    history_table: str       # history.<t>
    columns: tuple[str, ...]  # COPY column list, as SQL identifiers, paired with the jsonpaths by position
    jsonpaths: str           # s3:// URI of the jsonpaths file
    migration: str           # the migration file the spec matches

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "LoadSpec":
        try:
            return cls(document["event_type"], document["cluster_table"], document["history_table"],
                       tuple(document["columns"]), document["jsonpaths"], document.get("migration", "?"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed load spec ({exc!r}): {str(document)[:200]}") from None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def partition_statement(obj: EventsObject, spec: LoadSpec) -> str:
    return (f"ALTER TABLE {spec.history_table} ADD IF NOT EXISTS PARTITION (dt={_quote(obj.day.isoformat())})\n"
            f"LOCATION {_quote(obj.partition_uri)}")


def load_statements(obj: EventsObject, spec: LoadSpec, role_arn: str) -> list[str]:
    """One transaction: COPY into a temp table, replace rows by message_id, insert each message once."""
    names = ", ".join(spec.columns)
    return [
        # serialise loads of one table (Firehose delivers several days of a type at once, the loader runs them
        # concurrently): without it two DELETE + INSERT transactions may abort each other (error 1023)
        f"LOCK {spec.cluster_table}",
        f"CREATE TEMP TABLE {STAGING} (LIKE {spec.cluster_table})",
        f"COPY {STAGING} ({names})\nFROM {_quote(obj.uri)}\nIAM_ROLE {_quote(role_arn)}\n"
        f"FORMAT AS JSON {_quote(spec.jsonpaths)}\nGZIP\nTIMEFORMAT 'auto'",
        f"DELETE FROM {spec.cluster_table}\nUSING {STAGING}\n"
        f"WHERE {spec.cluster_table}.message_id = {STAGING}.message_id",
        f"INSERT INTO {spec.cluster_table} ({names})\n"
        f"SELECT {names}\nFROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY received_at)"
        f" AS copy_rank FROM {STAGING}) AS ranked\nWHERE copy_rank = 1",
        f"DROP TABLE {STAGING}",
    ]


def expire_statement(spec: LoadSpec, cluster_days: int) -> str:
    return (f"DELETE FROM {spec.cluster_table}\n"
            f"WHERE event_time < DATEADD(day, -{int(cluster_days) + 1}, TRUNC(GETDATE()))")


@dataclass(frozen=True)
class LoadResult:
    key: str
    event_type: str
    day: str
    partition: bool
    loaded: bool  # False: the day is older than the cluster window (Spectrum only)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Loader:
    def __init__(self, redshift: RedshiftData, *, bucket: str, role_arn: str, cluster_days: int = 30,
                 s3: Any = None, today: Callable[[], date] = lambda: datetime.now(timezone.utc).date(),
                 spec_ttl_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.redshift, self.bucket, self.role_arn, self.cluster_days = redshift, bucket, role_arn, cluster_days
        self._s3, self._today, self._clock, self.spec_ttl_seconds = s3, today, clock, spec_ttl_seconds
        self._specs: dict[str, tuple[float, LoadSpec]] = {}

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = aws.client("s3")
        return self._s3

    def spec(self, event_type: str) -> LoadSpec:
        """The type's load spec, cached a few minutes: a migration's new columns are picked up soon after
        ``migrate`` publishes them (objects loaded before that: ``letgo warehouse load`` replaces them)."""
        cached = self._specs.get(event_type)
        if cached is None or self._clock() - cached[0] > self.spec_ttl_seconds:
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=f"{LOAD_SPECS_PREFIX}{event_type}.json")["Body"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "AccessDenied", "403", "404"):
                    raise  # S3 answers AccessDenied for a missing key when listing is not allowed there
                raise LoadSpecMissing(
                    f"no load spec s3://{self.bucket}/{LOAD_SPECS_PREFIX}{event_type}.json: the warehouse "
                    f"migration for {event_type} has not been applied (`letgo warehouse migrate --stage …`)"
                ) from None
            cached = self._clock(), LoadSpec.from_document(json.loads(body.read()))
            self._specs[event_type] = cached
        return cached[1]

    def specs(self) -> list[LoadSpec]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=LOAD_SPECS_PREFIX)
        names = [o["Key"][len(LOAD_SPECS_PREFIX):-len(".json")] for page in pages for o in page.get("Contents", [])
                 if o["Key"].endswith(".json")]
        return [self.spec(name) for name in sorted(names)]

    def in_cluster_window(self, day: date) -> bool:
        return day >= self._today() - timedelta(days=self.cluster_days)

    def load(self, obj: EventsObject) -> LoadResult:
        spec = self.spec(obj.event_type)
        self.redshift.run(partition_statement(obj, spec))
        loaded = self.in_cluster_window(obj.day)
        if loaded:
            self.redshift.run_transaction(load_statements(obj, spec, self.role_arn))
        LOG.info("warehouse load %s: partition dt=%s, %s", obj.uri, obj.day,
                 "loaded into " + spec.cluster_table if loaded else "older than the cluster window (Spectrum only)")
        return LoadResult(obj.key, obj.event_type, obj.day.isoformat(), True, loaded)

    def expire(self) -> list[str]:
        tables = []
        for spec in self.specs():
            self.redshift.run(expire_statement(spec, self.cluster_days))
            tables.append(spec.cluster_table)
        return tables

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        """An EventBridge "Object Created" event, the daily ``{"action": "expire"}``, or ``{"action": "load",
        "key": …}`` (a manual re-drive)."""
        action = event.get("action")
        if action == "expire" or event.get("detail-type") == "Scheduled Event":
            return {"expired": self.expire()}
        if action == "load":
            keys = [event["key"]]
        elif event.get("detail-type") == "Object Created":
            keys = [event["detail"]["object"]["key"]]
        else:
            raise ValueError(f"unexpected event: {str(event)[:300]}")
        results = []
        for key in keys:
            try:
                obj = parse_key(self.bucket, key)
            except NotAnEventObject as exc:
                LOG.warning("warehouse loader skips %s", exc)  # not data we deliver; the object stays in S3
                results.append({"key": key, "skipped": str(exc)})
                continue
            results.append(self.load(obj).as_dict())
        return {"results": results}


DB_USER = re.compile(r"^[a-z_][a-z0-9_]{0,126}$")  # a Redshift user name as GetClusterCredentials takes it


def build_loader(env: Env | Mapping[str, str] | None = None) -> Loader:
    """The loader from its environment: ``CLUSTER_ID``, ``DATABASE``, ``REDSHIFT_DB_USER`` (its own database user,
    ``letgo_loader``: IAM credentials through the Data API, never the master secret), ``PROCESSED_BUCKET``,
    ``COPY_ROLE_ARN``, optional ``CLUSTER_DAYS`` and ``STATEMENT_TIMEOUT_SECONDS``."""
    env = env if isinstance(env, Env) else Env(env)
    user = env.required("REDSHIFT_DB_USER", "the loader's own database user, e.g. letgo_loader")
    if not DB_USER.match(user):
        raise ConfigError("REDSHIFT_DB_USER", f"{user!r} is not a Redshift user name (lower-case letters, digits, _)")
    target = Target(env.required("CLUSTER_ID"), env.required("DATABASE"), db_user=user)
    return Loader(RedshiftData(target, timeout_seconds=env.number("STATEMENT_TIMEOUT_SECONDS", 600, minimum=1)),
                  bucket=env.required("PROCESSED_BUCKET"), role_arn=env.required("COPY_ROLE_ARN"),
                  cluster_days=env.integer("CLUSTER_DAYS", 30, minimum=1))


_loader: Loader | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _loader
    if _loader is None:
        _loader = build_loader()
    return _loader.handle(event)
