"""Redshift DDL generated from the event types: nobody writes warehouse DDL by hand.

Why: a mobile developer adds an event type with one YAML file (``event_types/<Name>.yaml``); the warehouse
must follow without a data engineer translating it. Everything here is a pure function of the normalised
field specs (:mod:`handlers.schema.event_types`), so the same YAML gives the same SQL on every machine,
and :func:`main` turns the differences into ordered files under ``migrations/redshift/``.

The layout, per event type ``ItemListed`` (table ``item_listed``):

* ``events.item_listed`` — the cluster table, about ``cluster_days`` of recent events. Fixed envelope
  columns, then one typed column per property (a geo point becomes ``<name>_lat``/``<name>_lon``; objects
  and lists stay ``SUPER``). ``DISTSTYLE AUTO`` (Redshift picks and changes it as the table grows; no single
  join key fits every type) and ``SORTKEY(event_time)`` (every analysis is time-bounded, and the union view
  cuts on it). Loaded by ``COPY ... FORMAT AS JSON '<jsonpaths>'`` from the Firehose JSON lines
  (:meth:`handlers.tracking.processor.Event.to_document`); :func:`jsonpaths` is that file and :func:`load_spec`
  what the warehouse loader (:mod:`handlers.warehouse.loader`) needs to COPY each delivered object.
* ``history.item_listed`` — a Spectrum external table over every event ever delivered,
  ``s3://<processed>/events/type=ItemListed/dt=<YYYY-MM-DD>/`` (Firehose dynamic partitioning; ``dt`` is the
  UTC date of the event's own ``timestamp``, not of its arrival, so the view's split below is exact). The
  JSON SerDe maps only *top-level* keys of a line to columns, so the table mirrors the document
  (``messageid``, ``"timestamp"``, …) and ``properties`` is one ``STRUCT<…>`` of the declared properties;
  the view navigates into it (``h.properties.location.lat``). Why a struct and not ``SUPER``/JSON text:
  Spectrum external tables take ``struct``/``array``/``map`` for nested JSON (SUPER is cluster-only), and
  a ``VARCHAR`` column over a JSON object is only filled as JSON text with the *session* setting
  ``json_serialization_enable``, which a view cannot set. ``context`` is not declared there (the SerDe
  ignores undeclared keys): its keys are open-ended and the view could not return it anyway (below).
* ``analytics.item_listed`` — the view analysts query: cluster rows with
  ``event_time >= <day-aligned cutoff>`` ``UNION ALL`` history rows with ``dt < <cutoff>``, so each event is
  counted once whatever the retention job has or has not deleted yet. ``WITH NO SCHEMA BINDING`` is
  required for a view over an external table. Spectrum query results must be scalar, so the ``SUPER``
  columns (``context``, objects, lists) are ``NULL`` on the history side: query ``history.<t>`` directly with
  nested navigation for those.

Widths: Redshift counts ``VARCHAR`` in *bytes* and the consumer limits *characters*, so a string of
``max_length`` n gets ``VARCHAR(min(4n, 65535))`` (UTF-8 is at most 4 bytes a character; a wider value is
refused by the consumer long before COPY could fail on it), an enum ``4 × its longest value``, and the
envelope ids ``4 ×`` the consumer's default limits (``config/tracking.yaml``: 128 / 256 characters).

Column names: the property name in snake_case (Redshift folds unquoted identifiers to lower case, so
``firstOpen`` would read ``firstopen``), prefixed ``prop_`` when it would collide with an envelope column
or a Redshift reserved word (``language`` -> ``prop_language``). Two properties mapping to one column is a
:class:`DefinitionError`.

Schema evolution (:func:`evolve`): the consumer accepts only widening changes
(:mod:`handlers.schema.compatibility`), and so does the warehouse — a new optional property becomes
``ALTER TABLE … ADD COLUMN`` (nullable; old rows and old apps' events read ``NULL``), a looser string limit
or a longer enum value widens the ``VARCHAR`` (else COPY would fail on the first long value), the external
table's ``properties`` struct is re-declared (metadata only: the files are untouched and the SerDe maps by
name) and the view is recreated. A breaking change raises :class:`DefinitionError` with the same sentences
as ``letgo types check``.

Migration files are applied statement by statement *outside* a transaction block: Redshift refuses
``CREATE EXTERNAL TABLE``, ``ALTER TABLE`` on an external table and ``ALTER COLUMN … TYPE`` inside one.
They carry placeholders the applier substitutes: ``{bucket}`` (the processed-events bucket),
``{glue_database}`` (``letgo_events_<stage>``, see ``layers/redshift``) and ``{spectrum_role_arn}``.

Application users (:func:`application_users`; issue 12, item 8): applications log in as their own database
user, never as the master user (``letgo_admin``, whose Redshift-managed secret stays with operators' tools:
``letgo warehouse migrate`` / ``load``). The warehouse loader (:mod:`handlers.warehouse.loader`) is
``letgo_loader``, created ``PASSWORD DISABLE``: it can only log in with the temporary credentials
``redshift:GetClusterCredentials`` issues, which the Data API asks for when called with ``DbUser`` (IAM
allows the loader's role exactly that user). Its grants follow what the loader runs, nothing more:

* ``events.<t>``: ``SELECT, INSERT, DELETE`` — the load transaction (``LOCK``, a ``TEMP`` table ``LIKE`` the
  cluster table, ``DELETE … USING``, ``INSERT … SELECT``) and the daily expiry (``DELETE … WHERE``). On every
  table of the schema now, and through ``ALTER DEFAULT PRIVILEGES FOR USER letgo_admin`` on every table the
  later migrations create (``letgo warehouse migrate`` runs them as ``letgo_admin``), so a new event type needs
  no grant of its own. No ``UPDATE``, ``TRUNCATE``, ``ALTER``, ``DROP``, nothing on ``analytics``.
* ``TEMP`` on the database: the staging table of each load.
* ``ASSUMEROLE`` on the Spectrum role ``FOR COPY`` only: the ``COPY … IAM_ROLE``. Redshift grants it to
  ``PUBLIC`` until an administrator revokes that; granted explicitly so the loader keeps working once it is.
* The external schema ``history`` is *owned* by ``letgo_loader``. Registering a day
  (``ALTER TABLE history.<t> ADD IF NOT EXISTS PARTITION``) is an ``ALTER`` of an external table, and Redshift
  has no ``GRANT`` on an external table at all (its permissions are the external schema's): creating or
  altering external tables takes the external schema's owner or a superuser. Owning it also lets the loader
  drop or re-declare ``history.<t>`` — catalog metadata only (the Glue tables, written through the Spectrum
  role): the events in S3 stay, and ``letgo_admin`` (a superuser) still runs every migration. The tighter path
  left for later: the loader's IAM role registers partitions in Glue itself (``glue:BatchCreatePartition`` on
  ``letgo_events_<stage>``) and the user needs nothing on ``history``.

The users are part of the migrations (``state.json`` records each user's statements): a new user, or a new
statement for an existing one, is the next migration file; a statement taken away is refused (revoking is a
migration written by hand). ``CREATE USER`` has no ``IF NOT EXISTS`` in Redshift: like ``CREATE EXTERNAL
TABLE`` it relies on the migration ledger (``public.letgo_migrations``) running it once; every other statement
(``GRANT``, ``ALTER DEFAULT PRIVILEGES``, ``ALTER SCHEMA … OWNER``) gives the same result when run again.
These statements are checked as text here (tests/unit/test_warehouse_ddl.py): no Redshift runs in the tests.
Rollout on a stage deployed before the user existed: ``letgo warehouse migrate --stage S`` first (the loader
still deployed with the master secret keeps working: it is a superuser), then ``make deploy``; the other way
round, loads fail until the migration ran (``GetClusterCredentials`` does not create users here) and wait in
the loader's failure queue for ``letgo warehouse load``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from handlers.schema.compatibility import breaking_changes
from handlers.schema.errors import DefinitionError
from handlers.schema.event_types import Catalog, EventType
from letgo.warehouse.naming import (  # noqa: F401 - re-exported: callers import them from here
    CLUSTER_SCHEMA, HISTORY_SCHEMA, VIEW_SCHEMA, CLUSTER_DAYS, BUCKET, ROLE, GLUE_DATABASE, STATE_FILE,
    MAX_VARCHAR, BYTES_PER_CHAR, MESSAGE_ID_CHARS, USER_ID_CHARS, JSON_SERDE, JSONPATHS_PREFIX, DATABASE,
    MIGRATION_USER, LOADER_USER, RESERVED, Column, ENVELOPE, ENVELOPE_NAMES, SCALARS, snake_case, ident,
    table_name, _qualified, column_name, _varchar, _scalar_type, property_columns, columns, _column_sql,
)


# -- the cluster table and its load -----------------------------------------------------------------------------
def create_table(event_type: EventType) -> str:
    body = ",\n    ".join(_column_sql(c) for c in columns(event_type))
    return (f"CREATE TABLE IF NOT EXISTS {_qualified(CLUSTER_SCHEMA, event_type)} (\n    {body}\n)\n"
            f"DISTSTYLE AUTO\nSORTKEY (event_time)")


def jsonpaths(event_type: EventType) -> dict[str, list[str]]:
    """The COPY jsonpaths file: one path per column of :func:`load_spec`'s COPY column list, same order."""
    return {"jsonpaths": [c.json_path for c in columns(event_type)]}


def s3_prefix(event_type: EventType | str, bucket: str = BUCKET) -> str:
    name = event_type if isinstance(event_type, str) else event_type.name
    return f"s3://{bucket}/events/type={name}/"


def jsonpaths_key(event_type: EventType | str) -> str:
    return f"{JSONPATHS_PREFIX}{table_name(event_type)}.json"


def load_spec(event_type: EventType, bucket: str, migration: str) -> dict[str, Any]:
    """What the warehouse loader (:mod:`handlers.warehouse.loader`) needs to load one type's objects.

    Published by ``letgo warehouse migrate`` after the matching DDL ran, with :func:`jsonpaths` beside it: the
    COPY's explicit column list pairs with the jsonpaths by position, whatever the table's physical column
    order after ``ALTER TABLE … ADD COLUMN``.
    """
    return {"event_type": event_type.name, "cluster_table": _qualified(CLUSTER_SCHEMA, event_type),
            "history_table": _qualified(HISTORY_SCHEMA, event_type),
            "columns": [ident(c.name) for c in columns(event_type)],
            "jsonpaths": f"s3://{bucket}/{jsonpaths_key(event_type)}", "migration": migration}


# -- Spectrum --------------------------------------------------------------------------------------------------
def external_schema(glue_database: str = GLUE_DATABASE, role_arn: str = ROLE) -> str:
    return (f"CREATE EXTERNAL SCHEMA IF NOT EXISTS {HISTORY_SCHEMA}\nFROM DATA CATALOG DATABASE '{glue_database}'\n"
            f"IAM_ROLE '{role_arn}'\nCREATE EXTERNAL DATABASE IF NOT EXISTS")


def _struct_field(name: str) -> str:
    return ident(name.lower()) if name.lower() in RESERVED else name


def _spectrum_type(spec: Mapping[str, Any]) -> str | None:
    """The Spectrum type of one field (None: not declarable — arrays of arrays; the SerDe then skips it)."""
    kind = spec["type"]
    if kind == "geo_point":
        return "STRUCT<lat:DOUBLE PRECISION, lon:DOUBLE PRECISION>"
    if kind == "object":
        return _struct(spec["properties"])
    if kind == "list":
        item = _spectrum_type(spec["items"])
        if item is None or item.startswith(("ARRAY<", "MAP<")):  # Spectrum: arrays hold scalars or structs only
            return None
        return f"ARRAY<{item}>"
    return _scalar_type(spec)


def _struct(properties: Mapping[str, Mapping[str, Any]]) -> str | None:
    fields = [(name, _spectrum_type(spec)) for name, spec in properties.items()]
    fields = [f"{_struct_field(name)}:{kind}" for name, kind in fields if kind is not None]
    return f"STRUCT<{', '.join(fields)}>" if fields else None


def external_columns(properties: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(column, type) of ``history.<t>``: the document's top-level keys (the JSON SerDe maps those only)."""
    out = [("messageid", ENVELOPE[0].redshift_type), ('"timestamp"', "TIMESTAMP"), ("receivedat", "TIMESTAMP"),
           ("sentat", "TIMESTAMP"), ("userid", ENVELOPE[4].redshift_type), ("anonymousid", ENVELOPE[5].redshift_type),
           ("version", "INTEGER")]
    struct = _struct(properties)
    return out + ([("properties", struct)] if struct else [])


def external_table(event_type: EventType, bucket: str = BUCKET) -> str:
    body = ",\n    ".join(f"{name} {kind}" for name, kind in external_columns(event_type.properties))
    return (f"CREATE EXTERNAL TABLE {_qualified(HISTORY_SCHEMA, event_type)} (\n    {body}\n)\n"
            f"PARTITIONED BY (dt DATE)\nROW FORMAT SERDE '{JSON_SERDE}'\nSTORED AS TEXTFILE\n"
            f"LOCATION '{s3_prefix(event_type, bucket)}'")


def _history_expression(column: Column, properties: Mapping[str, Mapping[str, Any]]) -> str:
    if column.redshift_type == "SUPER":
        return "CAST(NULL AS SUPER)"  # Spectrum returns scalars only
    top, *rest = column.json_path[2:].split(".")
    if top == "properties" and _spectrum_type(properties[rest[0]]) is None:
        return f"CAST(NULL AS {column.redshift_type})"
    return ".".join(["h", ident(top.lower()), *(_struct_field(part) for part in rest)])


# -- the view --------------------------------------------------------------------------------------------------
def union_view(event_type: EventType, cluster_days: int = CLUSTER_DAYS) -> str:
    cols = columns(event_type)
    cutoff = f"DATEADD(day, -{int(cluster_days)}, TRUNC(GETDATE()))"  # midnight UTC: dt and event_time agree
    recent = ", ".join(f"e.{ident(c.name)}" for c in cols)
    history = ",\n       ".join(f"{_history_expression(c, event_type.properties)} AS {ident(c.name)}" for c in cols)
    return (f"CREATE OR REPLACE VIEW {_qualified(VIEW_SCHEMA, event_type)} AS\n"
            f"SELECT {recent}\nFROM {_qualified(CLUSTER_SCHEMA, event_type)} AS e\n"
            f"WHERE e.event_time >= {cutoff}\nUNION ALL\n"
            f"SELECT {history}\nFROM {_qualified(HISTORY_SCHEMA, event_type)} AS h\n"
            f"WHERE h.dt < {cutoff}\nWITH NO SCHEMA BINDING")


def schemas() -> list[str]:
    return [f"CREATE SCHEMA IF NOT EXISTS {CLUSTER_SCHEMA}", external_schema(),
            f"CREATE SCHEMA IF NOT EXISTS {VIEW_SCHEMA}"]


def create_all(event_type: EventType) -> list[str]:
    return [create_table(event_type), external_table(event_type), union_view(event_type)]


# -- application users -------------------------------------------------------------------------------------------
def loader_user(user: str = LOADER_USER) -> list[str]:
    """The warehouse loader's user and grants (why each: the module docstring, "Application users")."""
    table_privileges = "SELECT, INSERT, DELETE"
    return [
        f"CREATE USER {user} PASSWORD DISABLE",
        f"GRANT USAGE ON SCHEMA {CLUSTER_SCHEMA} TO {user}",
        f"GRANT {table_privileges} ON ALL TABLES IN SCHEMA {CLUSTER_SCHEMA} TO {user}",
        f"ALTER DEFAULT PRIVILEGES FOR USER {MIGRATION_USER} IN SCHEMA {CLUSTER_SCHEMA}\n"
        f"GRANT {table_privileges} ON TABLES TO {user}",
        f"GRANT TEMP ON DATABASE {DATABASE} TO {user}",
        f"GRANT ASSUMEROLE ON '{ROLE}' TO {user} FOR COPY",
        f"ALTER SCHEMA {HISTORY_SCHEMA} OWNER TO {user}",
    ]


def application_users() -> dict[str, list[str]]:
    """Each application's database user -> the statements that create it and grant what it needs."""
    return {LOADER_USER: loader_user()}


# -- evolution -------------------------------------------------------------------------------------------------
def _varchar_width(redshift_type: str) -> int | None:
    match = re.fullmatch(r"VARCHAR\((\d+)\)", redshift_type)
    return int(match.group(1)) if match else None


def evolve(old_properties: Mapping[str, Mapping[str, Any]], new_properties: Mapping[str, Mapping[str, Any]],
           event_type: EventType) -> list[str]:
    """The statements taking the warehouse from ``old_properties`` to ``new_properties`` (additive only)."""
    problems = list(breaking_changes(dict(old_properties), dict(new_properties)))
    if problems:
        raise DefinitionError(event_type.filename, problems[0].split(" ")[0],
                              "breaking change refused by the warehouse: " + "; ".join(problems)
                              + ". Its columns keep the old meaning for stored rows: add a new event type instead.")
    if dict(old_properties) == dict(new_properties):
        return []
    table = _qualified(CLUSTER_SCHEMA, event_type)
    old = {c.name: c for c in property_columns(old_properties, event_type.filename)}
    statements = []
    for column in property_columns(new_properties, event_type.filename):
        before = old.get(column.name)
        if before is None:
            statements.append(f"ALTER TABLE {table} ADD COLUMN {_column_sql(column)}")
        elif before.redshift_type != column.redshift_type:
            widths = _varchar_width(before.redshift_type), _varchar_width(column.redshift_type)
            if None in widths or widths[1] < widths[0]:  # unreachable after breaking_changes; never narrow
                raise DefinitionError(event_type.filename, column.json_path[2:],
                                      f"column {column.name} would change {before.redshift_type} -> "
                                      f"{column.redshift_type}: add a new event type instead")
            statements.append(f"ALTER TABLE {table} ALTER COLUMN {ident(column.name)} TYPE {column.redshift_type}")
    history = _qualified(HISTORY_SCHEMA, event_type)
    old_struct, new_struct = _struct(old_properties), _struct(new_properties)
    if old_struct != new_struct:
        if old_struct is not None:
            statements.append(f"ALTER TABLE {history} DROP COLUMN properties")
        statements.append(f"ALTER TABLE {history} ADD COLUMN properties {new_struct}")
    statements.append(union_view(_with_properties(event_type, new_properties)))
    return statements


def _with_properties(event_type: EventType, properties: Mapping[str, Mapping[str, Any]]) -> EventType:
    return EventType(name=event_type.name, version=event_type.version, description=event_type.description,
                     filename=event_type.filename, properties=dict(properties))


# -- migration files -------------------------------------------------------------------------------------------
HEADER = """-- Generated by `python -m letgo.warehouse.ddl` from event_types/*.yaml: do not edit; change the YAML and
-- regenerate. Apply statement by statement outside a transaction block (CREATE EXTERNAL TABLE, ALTER TABLE on
-- an external table and ALTER COLUMN ... TYPE refuse to run inside one), in file order, each file once.
-- Placeholders: {bucket} (processed events), {glue_database} (letgo_events_<stage>), {spectrum_role_arn}.
"""


@dataclass(frozen=True)
class Migration:
    name: str  # e.g. 0002_item_listed_v2
    sql: str
    state: dict[str, Any]  # state.json's types after this migration
    users: dict[str, list[str]] = field(default_factory=dict)  # state.json's users after this migration


def state_document(types: Mapping[str, EventType]) -> dict[str, Any]:
    return {name: {"version": t.version, "properties": t.properties} for name, t in sorted(types.items())}


def read_state(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))["types"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DefinitionError(str(path), None, f"not a warehouse state file: {exc}") from None


def read_users(out_dir: Path) -> dict[str, list[str]]:
    """The application users the folder's migrations create, with their statements (state.json's ``users``)."""
    path = Path(out_dir) / STATE_FILE
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("users", {}))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise DefinitionError(str(path), None, f"not a warehouse state file: {exc}") from None


def _render(statements: Iterable[str], title: str) -> str:
    return HEADER + f"-- {title}\n\n" + "".join(f"{s};\n\n" for s in statements).rstrip("\n") + "\n"


def plan_users(applied: Mapping[str, list[str]] | None, number: int,
               state: dict[str, Any]) -> Migration | None:
    """The migration creating the application users (or their new statements) not yet in ``applied``."""
    applied = dict(applied or {})
    wanted = application_users()
    for user in sorted(applied.keys() - wanted.keys()):
        raise DefinitionError("letgo/warehouse/ddl.py", user, "application user removed: drop it with a "
                                                              "migration written by hand")
    statements, touched = [], []
    for user, grants in wanted.items():
        gone = [s for s in applied.get(user, []) if s not in grants]
        if gone:
            raise DefinitionError("letgo/warehouse/ddl.py", user,
                                  f"statement removed from an applied user: {gone[0]!r}; revoke it with a "
                                  "migration written by hand")
        new = [s for s in grants if s not in applied.get(user, [])]
        if new:
            statements += new
            touched.append(user)
    if not statements:
        return None
    return Migration(f"{number:04d}_application_users", _render(statements, "application users: "
                                                                + ", ".join(touched)), state, wanted)


def plan_migration(catalog: Catalog, previous: Mapping[str, Any] | None, number: int,
                   users: Mapping[str, list[str]] | None = None) -> Migration | None:
    """The next migration given the state as of the last one (None: nothing to do).

    ``previous`` has the shape of ``state.json``'s ``types`` (and of ``schema.lock.json``):
    ``{Name: {"version": …, "properties": {…}}}``; None means an empty warehouse. ``users``: state.json's
    ``users`` (the application users already created); the event types' changes come first, then the users.
    """
    types = catalog.types
    state = state_document(types)
    applied_users = dict(users or {})
    if previous is None:
        statements = [*schemas()]
        for name in sorted(types):
            statements += create_all(types[name])
        return Migration(f"{number:04d}_initial", _render(statements, "schemas and every event type"), state,
                         applied_users)
    previous = {k: v for k, v in previous.items() if not k.startswith("_")}  # a lock document's _context
    for name in sorted(previous.keys() - types.keys()):
        raise DefinitionError(f"{name}.yaml", None, "event type removed: its warehouse tables keep its history; "
                                                    "keep the file (mark it deprecated in its description)")
    statements, touched = [], []
    for name in sorted(types):
        event_type = types[name]
        if name not in previous:
            statements += create_all(event_type)
            touched.append(f"{table_name(event_type)}_new")
        elif previous[name]["properties"] != event_type.properties:
            statements += evolve(previous[name]["properties"], event_type.properties, event_type)
            touched.append(f"{table_name(event_type)}_v{event_type.version}")
    if not statements:
        return plan_users(applied_users, number, state)
    slug = touched[0] if len(touched) == 1 else f"{len(touched)}_event_types"
    return Migration(f"{number:04d}_{slug}", _render(statements, ", ".join(touched)), state, applied_users)


def _next_number(out_dir: Path) -> int:
    numbers = [int(p.name[:4]) for p in Path(out_dir).glob("[0-9][0-9][0-9][0-9]_*.sql")]
    return max(numbers, default=0) + 1


def generate_migrations(catalog: Catalog, previous: Mapping[str, Any] | None, out_dir: Path, *,
                        write: bool = True, users: Mapping[str, list[str]] | None = None) -> Migration | None:
    """Write the next ``NNNN_*.sql`` under ``out_dir`` plus the new ``state.json``; return it (None: up to date).

    ``previous``: what the folder already covers — normally :func:`read_state` of ``out_dir``; a lock
    document (``schema.lock.json``) works too. ``users``: the application users it covers (default:
    :func:`read_users` of ``out_dir``).
    """
    out_dir = Path(out_dir)
    users = read_users(out_dir) if users is None else users
    migration = plan_migration(catalog, previous, _next_number(out_dir), users)
    if migration is not None and write:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{migration.name}.sql").write_text(migration.sql, encoding="utf-8")
        # not sort_keys: properties stay in YAML order (column order of later migrations and of the struct)
        document = {"comment": "each event type's properties as of the last generated migration "
                               "(written by python -m letgo.warehouse.ddl; do not edit)",
                    "last_migration": migration.name, "types": migration.state, "users": migration.users}
        (out_dir / STATE_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return migration


def main(argv: list[str] | None = None) -> int:
    from handlers.schema.event_types import load_catalog
    from letgo import REPO_ROOT

    parser = argparse.ArgumentParser(prog="python -m letgo.warehouse.ddl",
                                     description="Generate migrations/redshift/ from event_types/*.yaml")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the YAML has changes without their migration")
    parser.add_argument("--event-types", default=str(REPO_ROOT / "event_types"))
    parser.add_argument("--out", default=str(REPO_ROOT / "migrations" / "redshift"))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    written = 0
    while True:  # the event types' migration first, then the application users' (an empty folder: both)
        try:
            catalog = load_catalog(Path(args.event_types))
            migration = generate_migrations(catalog, read_state(out_dir), out_dir, write=not args.check)
        except DefinitionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if migration is None:
            if not written:
                print(f"{out_dir}: up to date")
            return 0
        if args.check:
            print(f"{out_dir}: missing migration {migration.name}.sql — run `python -m letgo.warehouse.ddl` and "
                  "commit it", file=sys.stderr)
            return 1
        print(f"wrote {out_dir / (migration.name + '.sql')}")
        written += 1


if __name__ == "__main__":
    raise SystemExit(main())
