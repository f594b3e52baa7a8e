"""The warehouse's names and columns: schemas, users, identifiers, and the Redshift column of every property.

The vocabulary :mod:`letgo.warehouse.ddl` writes its statements in, apart so that the statement builders and the
migration files stay readable: where things live (``events`` / ``history`` / ``analytics``, the placeholders a
migration is applied with), who runs what (the migrating admin, the loader's own user), how an event type's
name and properties become Redshift identifiers (snake_case, reserved words quoted) and typed columns (the
envelope first, then the YAML's properties; VARCHAR widths in bytes). :mod:`letgo.warehouse.ddl` re-exports
every name, so callers keep importing them from there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from handlers.schema.errors import DefinitionError
from handlers.schema.event_types import EventType

CLUSTER_SCHEMA = "events"
HISTORY_SCHEMA = "history"
VIEW_SCHEMA = "analytics"
CLUSTER_DAYS = 30
BUCKET = "{bucket}"
ROLE = "{spectrum_role_arn}"
GLUE_DATABASE = "{glue_database}"
STATE_FILE = "state.json"
MAX_VARCHAR = 65535
BYTES_PER_CHAR = 4  # UTF-8
MESSAGE_ID_CHARS, USER_ID_CHARS = 128, 256  # config/tracking.yaml: limits.max_message_id_length / max_user_id_length
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
JSONPATHS_PREFIX = "warehouse/jsonpaths/"
DATABASE = "warehouse"  # layers/redshift: the cluster's DBName
MIGRATION_USER = "letgo_admin"  # layers/redshift: MasterUsername; `letgo warehouse migrate` runs as it
LOADER_USER = "letgo_loader"  # the warehouse loader's DbUser (layers/redshift: REDSHIFT_DB_USER)

# Redshift's reserved words (docs: "Reserved words"), lower case.
RESERVED = frozenset("""
aes128 aes256 all allowoverwrite analyse analyze and any array as asc authorization az64 backup between binary
blanksasnull both bytedict bzip2 case cast check collate column constraint create credentials cross current_date
current_time current_timestamp current_user current_user_id default deferrable deflate defrag delta delta32k desc
disable distinct do else emptyasnull enable encode encrypt encryption end except explicit false for foreign freeze
from full globaldict256 globaldict64k grant group gzip having identity ignore ilike in initially inner intersect
interval into is isnull join language leading left like limit localtime localtimestamp lun luns lzo lzop minus
mostly16 mostly32 mostly8 natural new not notnull null nulls off offline offset oid old on only open or order outer
overlaps parallel partition percent permissions pivot placing primary raw readratio recover references rejectlog
resort respect restore right select session_user similar snapshot some sysdate system table tag tdes text255
text32k then timestamp to top trailing true truncatecolumns union unique unnest unpivot user using verbose wallet
when where with without
""".split())


@dataclass(frozen=True)
class Column:
    """One column of ``events.<t>``: where its value sits in the Firehose document and its Redshift type."""

    name: str
    redshift_type: str
    json_path: str  # JSONPath in the document Firehose writes, e.g. $.properties.location.lat
    nullable: bool = True


ENVELOPE = (
    Column("message_id", f"VARCHAR({BYTES_PER_CHAR * MESSAGE_ID_CHARS})", "$.messageId", nullable=False),
    Column("event_time", "TIMESTAMP", "$.timestamp", nullable=False),
    Column("received_at", "TIMESTAMP", "$.receivedAt"),
    Column("sent_at", "TIMESTAMP", "$.sentAt"),
    Column("user_id", f"VARCHAR({BYTES_PER_CHAR * USER_ID_CHARS})", "$.userId"),
    Column("anonymous_id", f"VARCHAR({BYTES_PER_CHAR * USER_ID_CHARS})", "$.anonymousId"),
    Column("schema_version", "INTEGER", "$.version"),
    Column("context", "SUPER", "$.context"),
)
ENVELOPE_NAMES = frozenset(c.name for c in ENVELOPE)
SCALARS = {"integer": "BIGINT", "number": "DOUBLE PRECISION", "boolean": "BOOLEAN", "timestamp": "TIMESTAMP"}


# -- names ---------------------------------------------------------------------------------------------------
def snake_case(name: str) -> str:
    """ItemListed -> item_listed, firstOpen -> first_open, HTTPCall -> http_call."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def ident(name: str) -> str:
    """An identifier as SQL: quoted only if it is a reserved word."""
    return f'"{name}"' if name in RESERVED else name


def table_name(event_type: EventType | str) -> str:
    return snake_case(event_type if isinstance(event_type, str) else event_type.name)


def _qualified(schema: str, event_type: EventType | str) -> str:
    return f"{schema}.{ident(table_name(event_type))}"


def column_name(property_name: str) -> str:
    name = snake_case(property_name)
    return f"prop_{name}" if name in ENVELOPE_NAMES or name in RESERVED else name


# -- columns -------------------------------------------------------------------------------------------------
def _varchar(chars: int) -> str:
    return f"VARCHAR({max(1, min(BYTES_PER_CHAR * chars, MAX_VARCHAR))})"


def _scalar_type(spec: Mapping[str, Any]) -> str | None:
    kind = spec["type"]
    if kind == "string":
        return _varchar(spec["max_length"])
    if kind == "enum":
        return _varchar(max(len(v) for v in spec["values"]))
    return SCALARS.get(kind)


def property_columns(properties: Mapping[str, Mapping[str, Any]], filename: str = "?") -> list[Column]:
    out: list[Column] = []
    for prop, spec in properties.items():
        path = f"$.properties.{prop}"
        if spec["type"] == "geo_point":
            out += [Column(column_name(f"{prop}_{part}"), "DOUBLE PRECISION", f"{path}.{part}")
                    for part in ("lat", "lon")]
        else:
            out.append(Column(column_name(prop), _scalar_type(spec) or "SUPER", path))
    seen: dict[str, str] = {c.name: "the envelope" for c in ENVELOPE}
    for column in out:
        if column.name in seen:
            raise DefinitionError(filename, column.json_path[2:],
                                  f"maps to warehouse column {column.name!r}, already taken by {seen[column.name]}: "
                                  "rename the property")
        seen[column.name] = column.json_path[2:]
    return out


def columns(event_type: EventType) -> list[Column]:
    """The columns of ``events.<t>``, in order: the envelope, then the properties as written in the YAML."""
    return [*ENVELOPE, *property_columns(event_type.properties, event_type.filename)]


def _column_sql(column: Column) -> str:
    return f"{ident(column.name)} {column.redshift_type}" + ("" if column.nullable else " NOT NULL")
