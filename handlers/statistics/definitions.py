"""Metric definitions declared in YAML (``metrics/*.yaml``), validated once against the event-type catalog.

An analyst adds a metric by adding one file — no code — exactly like an event type. Everything that can be
wrong with a definition is found when the statistics consumer starts, not hours later as silently empty or
wrong numbers: each path is checked against the event type's properties (or the shared context), fields to
add up must be numbers, and the windows must fit one Lambda event source mapping. A broken file raises
:class:`DefinitionError` naming the file, the field and the reason — read with the rules every definition file
shares (:mod:`handlers.schema.rules`, :mod:`handlers.schema.paths`).

All metrics share one stream: the mapping's ``TumblingWindowInSeconds`` is the gcd of the metric windows
(at most 900 s, Lambda's limit); a longer metric window is the sum of its stream sub-windows, which the
sink adds up. Counts, sums, minima and maxima add up that way; distinct-user estimates do not, so a
``distinct_users`` metric must use the stream window itself.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.schema.errors import DefinitionError
from handlers.schema.event_types import Catalog, EventType
from handlers.schema.paths import field_spec
from handlers.schema.rules import duration, known_keys, read_yaml, require, required_keys

MAX_STREAM_WINDOW_SECONDS = 900  # Lambda's TumblingWindowInSeconds upper bound
MAX_WINDOW_SECONDS = 3600
MAX_GROUP_BY = 4
ANY_TYPE = "*"
AGGREGATIONS = ("count", "sum", "min", "max", "avg", "distinct_users")
FIELD_AGGREGATIONS = frozenset({"sum", "min", "max", "avg"})
SCALAR_KINDS = frozenset({"string", "integer", "number", "boolean", "enum", "timestamp"})
NUMERIC_KINDS = frozenset({"integer", "number"})
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TOP_LEVEL_KEYS = ("name", "version", "description", "owner", "events", "group_by", "window", "aggregation", "field")
REQUIRED_KEYS = ("name", "version", "description", "events", "window", "aggregation")


@dataclass(frozen=True)
class MetricDefinition:
    """One validated metric. Paths are dotted (``type``, ``properties.category``, ``context.os.name``)."""

    name: str
    version: int
    description: str
    event_type: str  # an event type name, or "*" for every type
    where: tuple[tuple[str, tuple[Any, ...]], ...]  # (path, allowed values): all must pass
    group_by: tuple[str, ...]
    window_seconds: int
    aggregation: str
    field: str | None
    filename: str

    @property
    def key(self) -> str:
        return f"{self.name}:v{self.version}"


@dataclass(frozen=True)
class MetricSet:
    """Every metric of a deployment and the one stream window they are computed on."""

    metrics: tuple[MetricDefinition, ...]
    stream_window_seconds: int

    @property
    def windows(self) -> dict[str, int]:
        """Metric key -> its window in seconds (what the sink needs to place sub-windows)."""
        return {m.key: m.window_seconds for m in self.metrics}

    def get(self, name: str) -> MetricDefinition | None:
        return next((m for m in self.metrics if m.name == name), None)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def parse_window(value: Any, filename: str) -> int:
    """``"60s"`` / ``"5m"`` / ``"1h"`` -> seconds (at most one hour)."""
    seconds = duration(value, filename, "window")
    require(seconds <= MAX_WINDOW_SECONDS, filename, "window", f"{value} is longer than one hour")
    return seconds


def resolve_path(path: Any, event_type: EventType | None, catalog: Catalog, filename: str,
                 where: str) -> dict[str, Any]:
    """Check a dotted path against the event type (None = every type) and return its field spec.

    ``type`` is the event's type; ``properties.<prop>[.<sub>]`` a declared property of that type;
    ``context.<...>`` a field declared in ``_context.yaml``. Undeclared paths are refused (a typo would
    otherwise group everything under None), and so are PII fields: metric rows are not scrubbed.
    """
    require(isinstance(path, str) and path != "", filename, where, "a path must be a non-empty string")
    parts = path.split(".")
    require(all(parts), filename, where, f"{path!r} has an empty segment")
    if parts == ["type"]:
        return {"type": "string", "pii": False}
    root = parts[0]
    if root == "properties":
        require(event_type is not None, filename, where,
                f"events.type '{ANY_TYPE}' matches every type: only 'type' and 'context.*' paths are allowed, "
                f"not {path!r}")
        require(2 <= len(parts) <= 3, filename, where,
                f"{path!r}: a property path is properties.<prop> or properties.<prop>.<sub>")
    elif root == "context":
        require(len(parts) >= 2, filename, where, "a context path names a field: context.<field>[.<sub>...]")
    else:
        raise DefinitionError(filename, where, f"{path!r}: a path is 'type', 'properties.<prop>[.<sub>]' "
                                               f"or 'context.<field>[...]'")
    return field_spec(path, event_type, catalog, filename, where,
                      no_pii="metrics must not group, filter or add up personal data")


def _scalar_path(path: Any, event_type: EventType | None, catalog: Catalog, filename: str,
                 where: str) -> dict[str, Any]:
    spec = resolve_path(path, event_type, catalog, filename, where)
    require(spec["type"] in SCALAR_KINDS, filename, where,
            f"{path!r} is a {spec['type']}: only scalar fields ({', '.join(sorted(SCALAR_KINDS))}) can be "
            f"grouped by or filtered on")
    return spec


def _load_where(where: Any, event_type: EventType | None, catalog: Catalog,
                filename: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if where is None:
        return ()
    require(isinstance(where, dict), filename, "events.where", "must be a mapping of path to allowed values")
    out = []
    for path, values in where.items():
        here = f"events.where.{path}"
        spec = _scalar_path(path, event_type, catalog, filename, here)
        require(isinstance(values, list) and len(values) > 0 and all(_is_scalar(v) for v in values),
                filename, here, "must be a non-empty list of allowed values (strings, numbers, booleans)")
        if spec["type"] == "enum":
            unknown = [v for v in values if v not in spec["values"]]
            require(not unknown, filename, here,
                    f"{unknown} not among the enum's values ({', '.join(spec['values'])}): it would never match")
        if path == "type":
            unknown = [v for v in values if v not in catalog.types]
            require(not unknown, filename, here, f"unknown event type(s) {unknown}: it would never match")
        out.append((path, tuple(values)))
    return tuple(out)


def _load_group_by(group_by: Any, event_type: EventType | None, catalog: Catalog, filename: str) -> tuple[str, ...]:
    if group_by is None:
        return ()
    require(isinstance(group_by, list), filename, "group_by", "must be a list of paths")
    require(len(group_by) <= MAX_GROUP_BY, filename, "group_by",
            f"{len(group_by)} paths; at most {MAX_GROUP_BY} (every extra dimension multiplies the groups)")
    require(len(set(map(str, group_by))) == len(group_by), filename, "group_by", "a path is listed twice")
    for index, path in enumerate(group_by):
        _scalar_path(path, event_type, catalog, filename, f"group_by[{index}]")
    return tuple(group_by)


def load_metric(path: Path, catalog: Catalog) -> MetricDefinition:
    """One file -> a checked definition (windows across files are checked by :func:`load_metrics`)."""
    name = path.name
    doc = read_yaml(path)
    require(isinstance(doc, dict), name, None, "must be a mapping with name, version, events, window, aggregation")
    known_keys(doc, TOP_LEVEL_KEYS, name, None)
    required_keys(doc, REQUIRED_KEYS, name)
    require(isinstance(doc.get("name"), str) and NAME_PATTERN.match(doc["name"]) is not None, name, "name",
            "required; snake_case ASCII such as leads_per_category")
    require(doc["name"] == path.stem, name, "name", f"must match the file name ({path.stem})")
    version = doc.get("version")
    require(isinstance(version, int) and not isinstance(version, bool) and version >= 1, name, "version",
            "required; a positive integer, bumped whenever the numbers it produces change meaning")
    require(isinstance(doc.get("description"), str) and doc["description"].strip() != "", name, "description",
            "required: say what the number means")

    events = doc.get("events")
    require(isinstance(events, dict), name, "events", "required: a mapping with 'type' and optional 'where'")
    known_keys(events, ("type", "where"), name, "events")
    type_name = events.get("type")
    require(type_name == ANY_TYPE or (isinstance(type_name, str) and type_name in catalog.types), name,
            "events.type", f"{type_name!r} is not an event type; use '{ANY_TYPE}' or one of "
                           f"{', '.join(sorted(catalog.types))}")
    event_type = None if type_name == ANY_TYPE else catalog.types[type_name]
    where = _load_where(events.get("where"), event_type, catalog, name)
    group_by = _load_group_by(doc.get("group_by"), event_type, catalog, name)
    window = parse_window(doc.get("window"), name)

    aggregation = doc.get("aggregation")
    require(aggregation in AGGREGATIONS, name, "aggregation",
            f"{aggregation!r} is not an aggregation; use one of {', '.join(AGGREGATIONS)}")
    field = doc.get("field")
    if aggregation in FIELD_AGGREGATIONS:
        require(field is not None, name, "field", f"required for {aggregation}: the numeric property to aggregate")
        require(isinstance(field, str) and field.startswith("properties."), name, "field",
                f"{field!r}: {aggregation} aggregates a numeric property, properties.<prop>[.<sub>]")
        spec = resolve_path(field, event_type, catalog, name, "field")
        require(spec["type"] in NUMERIC_KINDS, name, "field",
                f"{field!r} is a {spec['type']}; {aggregation} needs a number or integer property")
    else:
        require(field is None, name, "field", f"not allowed for {aggregation} (it does not read a field)")
    return MetricDefinition(
        name=doc["name"], version=version, description=doc["description"].strip(), event_type=type_name,
        where=where, group_by=group_by, window_seconds=window, aggregation=aggregation, field=field,
        filename=name,
    )


def load_metrics(directory: Path, catalog: Catalog) -> MetricSet:
    """Load every ``*.yaml`` under ``directory``; raise DefinitionError on the first broken file."""
    directory = Path(directory)
    require(directory.is_dir(), str(directory), None, "metrics directory not found")
    metrics = tuple(load_metric(path, catalog) for path in sorted(directory.glob("*.yaml"))
                    if not path.name.startswith("_"))
    require(bool(metrics), str(directory), None, "no metric definitions found (*.yaml)")

    stream = math.gcd(*(m.window_seconds for m in metrics))
    if stream > MAX_STREAM_WINDOW_SECONDS:
        shortest = min(metrics, key=lambda m: m.window_seconds)
        raise DefinitionError(shortest.filename, "window",
                              f"the stream window (gcd of all metric windows) would be {stream} s, above the "
                              f"{MAX_STREAM_WINDOW_SECONDS} s Lambda allows for TumblingWindowInSeconds; "
                              f"use windows whose gcd is at most {MAX_STREAM_WINDOW_SECONDS} s")
    for metric in metrics:
        if metric.aggregation == "distinct_users":
            require(metric.window_seconds == stream, metric.filename, "window",
                    f"distinct_users must use the stream window ({stream} s, the gcd of all metric windows), "
                    f"not {metric.window_seconds} s: its per-shard sketches cannot be summed across "
                    f"sub-windows (a user active in two sub-windows would count twice)")
    return MetricSet(metrics=metrics, stream_window_seconds=stream)
