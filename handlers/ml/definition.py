"""Model definitions declared in YAML (``models/<name>.yaml``), validated once into frozen dataclasses.

A data scientist adds a model with one YAML file and one Python module: the file says what the model learns
from (an event type, the columns read from it, the label, a cap on rows and the column to stratify on), what
the data must look like before training may start (schema, null rates, ranges, drift against the current
model), how a candidate is judged (metrics, absolute thresholds, "not more than x worse than the current
model"), what the published model is allowed to do (guard rails, a kill switch), how it is served (endpoints
with typed, bounded inputs) and which known requests must keep working (golden requests, replayed offline
before publishing and against the live API by the validator).

Everything that can be wrong with a definition is found when it is loaded — by the training job, the serving
wrapper and the validator alike — and raises :class:`~handlers.tracking.errors.DefinitionError` naming the file,
the field and the reason, like a broken event type. With the event-type catalog at hand, every column path
is also checked against the event type (declared, not personal data, a kind the column can hold); golden
request inputs are run through their endpoint's own input checks; entry points are imported.

Serving inputs use the event types' field specs (``type: string|integer|number|boolean|enum`` with the same
bounds keys) and the same compiled checks, so a request is validated exactly as an event property would be.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

import yaml

from handlers.ml.dataset import KINDS
from handlers.ml.errors import InvalidModelInput
from handlers.ml.metrics import METRICS
from handlers.tracking import event_types as et
from handlers.tracking.errors import DefinitionError, Invalid

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
COLUMN_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ENTRY_POINT_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
ENDPOINT_PATTERN = re.compile(r"^(/[a-z0-9][a-z0-9_.-]*)+$")
TYPE_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
ENV_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
WINDOW_PATTERN = re.compile(r"^([1-9][0-9]*)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
INPUT_TYPES = ("string", "integer", "number", "boolean", "enum")
METHODS = ("GET", "POST")
# Which column kinds an event field of each type can feed.
KINDS_FOR_FIELD = {"string": {"text", "categorical"}, "enum": {"categorical", "text"},
                   "integer": {"numeric", "categorical"}, "number": {"numeric"},
                   "boolean": {"boolean", "categorical"}}
TOP_LEVEL_KEYS = frozenset({"name", "description", "owner", "data", "checks", "training", "evaluation", "artifact",
                            "serving", "guard_rails", "golden_requests"})
REQUIRED_TOP_LEVEL = ("name", "description", "owner", "data", "checks", "training", "evaluation", "serving",
                      "guard_rails", "golden_requests")
# Types every skops artefact may hold whatever the model: containers and numpy's array machinery. A model adds
# its estimators under ``artifact.trusted_types``. Nothing else is ever instantiated from a file.
BASE_TRUSTED_TYPES = ("builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int",
                      "builtins.float", "builtins.bool", "builtins.slice", "builtins.NoneType", "numpy.ndarray",
                      "numpy.dtype", "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32", "numpy.bool_",
                      "numpy.str_", "numpy.object_", "numpy.random.mtrand.RandomState")
MAX_ROWS_LIMIT = 10_000_000


# -- the definition ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One training column, read from the processed event at ``path`` (``properties.title``, ``context.locale``)."""

    name: str
    path: str
    kind: str  # one of handlers.ml.dataset.KINDS

    def extract(self, document: Mapping[str, Any]) -> Any:
        node: Any = document
        for part in self.path.split("."):
            if not isinstance(node, Mapping):
                return None
            node = node.get(part)
        return node


@dataclass(frozen=True)
class Label:
    """What the model predicts: ``column`` as is, or converted to euros with ``eur_rates`` (units per euro)."""

    name: str
    column: str
    kind: str  # numeric (regression) or categorical (classification)
    currency_column: str | None = None
    eur_rates: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def derive(self, row: Mapping[str, Any]) -> Any:
        """The label of one row; None when it cannot be known (no value, or a currency without a rate)."""
        value = row.get(self.column)
        if value is None or self.currency_column is None:
            return value
        rate = self.eur_rates.get(row.get(self.currency_column))  # type: ignore[arg-type]
        if rate is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return value / rate


@dataclass(frozen=True)
class DataSpec:
    event_type: str
    lookback_days: int
    columns: tuple[Column, ...]
    label: Label
    features: tuple[str, ...]
    max_rows: int
    stratify_by: str
    holdout_fraction: float
    seed: int

    @property
    def kinds(self) -> dict[str, str]:
        """Every column of the training table (declared columns plus the derived label) and its kind."""
        return {**{c.name: c.kind for c in self.columns}, self.label.name: self.label.kind}


@dataclass(frozen=True)
class RangeRule:
    """Numeric bounds or allowed categorical values; at most ``max_violation_rate`` of present values may miss."""

    column: str
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = None
    max_violation_rate: float = 0.0


@dataclass(frozen=True)
class DriftRule:
    """The population stability index of ``column`` against the current model's data may not exceed ``max_psi``."""

    column: str
    max_psi: float


@dataclass(frozen=True)
class CheckSpec:
    min_rows: int
    max_null_rate: Mapping[str, float]  # every column of the table, defaults applied
    ranges: tuple[RangeRule, ...]
    drift: tuple[DriftRule, ...]
    bins: int  # quantile bins for numeric reference statistics
    top_categories: int  # categories kept by name in reference statistics; the rest pool into "__other__"


@dataclass(frozen=True)
class MetricThreshold:
    metric: str
    min: float | None = None
    max: float | None = None

    def problem(self, value: float) -> str | None:
        if self.min is not None and value < self.min:
            return f"{self.metric} {value:.4g} is below the minimum {self.min:g}"
        if self.max is not None and value > self.max:
            return f"{self.metric} {value:.4g} is above the maximum {self.max:g}"
        return None


@dataclass(frozen=True)
class RelativeThreshold:
    """The candidate may be at most ``max_worse`` (0.02 = 2 %) worse than the current model on ``metric``."""

    metric: str
    max_worse: float


@dataclass(frozen=True)
class EvaluationSpec:
    """``confidence`` (e.g. 0.9): a relative gate refuses a candidate only when, at that confidence (paired
    bootstrap over the holdout), it is worse than ``max_worse``; None compares the point estimates."""

    metrics: tuple[str, ...]
    thresholds: tuple[MetricThreshold, ...]
    relative: tuple[RelativeThreshold, ...]
    confidence: float | None = None


@dataclass(frozen=True)
class EntryPoint:
    """A ``module:function`` reference, imported when the definition is loaded."""

    target: str
    function: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        function = self.function or _import(self.target)
        return function(*args, **kwargs)


@dataclass(frozen=True)
class Endpoint:
    """A serving route: typed, bounded inputs (event-type field specs) and the names of the outputs."""

    path: str
    method: str
    inputs: Mapping[str, Mapping[str, Any]]  # normalised field specs, as handlers.tracking.event_types makes them
    outputs: tuple[str, ...]
    check: Callable[[Any], Any] = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def validate(self, request: Any) -> dict[str, Any]:
        """The cleaned input (coerced, sanitised), or :class:`InvalidModelInput` naming the field and the reason."""
        try:
            return self.check(request)
        except Invalid as error:
            field_name = error.field.removeprefix("input.") if error.field else None
            raise InvalidModelInput(field_name, error.reason.value, error.message) from None


@dataclass(frozen=True)
class Expectation:
    """What a golden request's answer must hold in ``field``: a range, an exact value, or a value ± tolerance."""

    field: str
    min: float | None = None
    max: float | None = None
    equals: Any = None
    value: float | None = None
    tolerance: float | None = None  # relative: 0.1 = ± 10 % of ``value``

    def problem(self, response: Mapping[str, Any]) -> str | None:
        if self.field not in response:
            return f"{self.field}: missing from the answer"
        got = response[self.field]
        if self.equals is not None:
            return None if got == self.equals else f"{self.field}: {got!r}, expected {self.equals!r}"
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            return f"{self.field}: {got!r} is not a finite number"
        if self.min is not None and got < self.min:
            return f"{self.field}: {got:g} is below {self.min:g}"
        if self.max is not None and got > self.max:
            return f"{self.field}: {got:g} is above {self.max:g}"
        if self.value is not None and abs(got - self.value) > (self.tolerance or 0.0) * abs(self.value):
            return f"{self.field}: {got:g} is not within {self.tolerance:.0%} of {self.value:g}"
        return None


@dataclass(frozen=True)
class GoldenRequest:
    """A known request and what its answer must satisfy (checked offline before publishing, then live)."""

    name: str
    endpoint: str
    input: Mapping[str, Any]
    expect: tuple[Expectation, ...]

    def problems(self, response: Mapping[str, Any]) -> list[str]:
        return [p for p in (e.problem(response) for e in self.expect) if p]


@dataclass(frozen=True)
class GuardRails:
    """Limits on what a published model may do.

    * ``output_field`` must stay within [``output_min``, ``output_max``]; an answer outside is never served.
    * ``max_change_relative`` / ``max_change_window_seconds``: within that window the answer to the same input
      may move by at most that fraction. Training refuses a candidate whose median change against the current
      model on the holdout exceeds it; the serving wrapper caps what it serves within the window.
    * ``kill_switch_env``: an environment variable that, when true, turns the model off (the store also keeps
      a kill-switch flag per model, :meth:`handlers.ml.store.ModelStore.kill_switch`, for a switch without a
      redeploy).
    """

    output_field: str
    output_min: float
    output_max: float
    max_change_relative: float
    max_change_window_seconds: int
    kill_switch_env: str

    def output_problem(self, response: Mapping[str, Any]) -> str | None:
        value = response.get(self.output_field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{self.output_field}: {value!r} is not a finite number"
        if not self.output_min <= value <= self.output_max:
            return (f"{self.output_field}: {value:g} is outside the guard rail "
                    f"[{self.output_min:g}, {self.output_max:g}]")
        return None


@dataclass(frozen=True)
class ModelDefinition:
    """One validated ``models/<name>.yaml``."""

    name: str
    description: str
    owner: str
    filename: str
    sha256: str  # of the file's bytes: recorded with every version trained from it
    data: DataSpec
    checks: CheckSpec
    train: EntryPoint  # (train: Dataset, labels: np.ndarray, definition, *, seed) -> model object
    predict_batch: EntryPoint  # (model, data: Dataset) -> np.ndarray of labels, for evaluation
    predict: EntryPoint  # (model, request: dict) -> response dict, for serving and golden requests
    evaluation: EvaluationSpec
    trusted_types: tuple[str, ...]  # what loading an artefact may instantiate: BASE_TRUSTED_TYPES + the model's
    endpoints: tuple[Endpoint, ...]
    guard_rails: GuardRails
    golden_requests: tuple[GoldenRequest, ...]

    def endpoint(self, path: str) -> Endpoint:
        for endpoint in self.endpoints:
            if endpoint.path == path:
                return endpoint
        raise KeyError(path)


# -- validation helpers ----------------------------------------------------------------------------------------
def _require(condition: bool, filename: str, path: str | None, message: str) -> None:
    if not condition:
        raise DefinitionError(filename, path, message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(doc: Mapping[str, Any], key: str, filename: str, where: str, *, required: bool = True) -> dict[str, Any]:
    value = doc.get(key)
    if value is None and not required:
        return {}
    _require(isinstance(value, dict), filename, where, "required: a mapping" if value is None else "must be a mapping")
    return value


def _known_keys(doc: Mapping[str, Any], allowed: set[str] | frozenset[str], filename: str, where: str | None) -> None:
    unknown = set(doc) - set(allowed)
    _require(not unknown, filename, where, f"unknown key(s) {sorted(map(str, unknown))}; known: {sorted(allowed)}")


def _text(doc: Mapping[str, Any], key: str, filename: str, where: str) -> str:
    value = doc.get(key)
    _require(isinstance(value, str) and value.strip() != "", filename, where, "required: a non-empty string")
    return value.strip()


def _number(value: Any, filename: str, where: str, *, low: float | None = None, high: float | None = None) -> float:
    _require(_is_number(value), filename, where, f"{value!r} is not a finite number")
    if low is not None:
        _require(value >= low, filename, where, f"{value} is below {low}")
    if high is not None:
        _require(value <= high, filename, where, f"{value} is above {high}")
    return float(value)


def _integer(value: Any, filename: str, where: str, *, low: int, high: int | None = None) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool), filename, where, f"{value!r} is not an integer")
    _require(value >= low and (high is None or value <= high), filename, where,
             f"{value} is outside [{low}, {high if high is not None else '∞'}]")
    return int(value)


def _entry_point(value: Any, filename: str, where: str, *, resolve: bool) -> EntryPoint:
    _require(isinstance(value, str) and ENTRY_POINT_PATTERN.match(value) is not None, filename, where,
             f"{value!r} is not an entry point; write module.path:function")
    if not resolve:
        return EntryPoint(value)
    try:
        function = _import(value)
    except (ImportError, AttributeError) as exc:
        raise DefinitionError(filename, where, f"cannot import {value}: {exc}") from None
    _require(callable(function), filename, where, f"{value} is not callable")
    return EntryPoint(value, function)


def _import(target: str) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def parse_window(value: Any, filename: str, where: str) -> int:
    """``"90s"`` / ``"30m"`` / ``"24h"`` / ``"7d"`` -> seconds."""
    match = WINDOW_PATTERN.match(value) if isinstance(value, str) else None
    _require(match is not None, filename, where, f"{value!r} is not a window; write e.g. 30m, 24h or 7d")
    assert match is not None
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def _per_column(value: Any, columns: dict[str, str], filename: str, where: str, *, default: float | None,
                high: float | None) -> dict[str, float]:
    """``{default: x, <column>: y, ...}`` (or a single number for all) -> a value per listed column."""
    if _is_number(value):
        value = {"default": value}
    _require(isinstance(value, dict), filename, where, "a number, or a mapping of column (or 'default') to number")
    for key in value:
        _require(key == "default" or key in columns, filename, f"{where}.{key}",
                 f"no column {key!r} (columns: {', '.join(columns)})")
    base = value.get("default", default)
    out = {}
    for column in columns:
        if column in value or base is not None:
            raw = value.get(column, base)
            out[column] = _number(raw, filename, f"{where}.{column}" if column in value else f"{where}.default",
                                  low=0.0, high=high)
    return out


# -- sections ---------------------------------------------------------------------------------------------
def _resolve_column_path(path: str, event_type: Any, catalog: Any, kind: str, filename: str, where: str) -> None:
    """Check a column path against the event type: declared, not personal data, a type the kind can hold."""
    parts = path.split(".")
    if parts[0] == "properties":
        specs: Mapping[str, Any] = event_type.properties
        declared_in = f"event type {event_type.name} ({event_type.filename})"
    else:
        specs, declared_in = catalog.context_properties, "_context.yaml"
    spec: Mapping[str, Any] = {}
    for depth, part in enumerate(parts[1:], start=1):
        _require(part in specs, filename, where, f"{path!r}: no field {part!r} under {'.'.join(parts[:depth])} in "
                                                 f"{declared_in} (known: {', '.join(sorted(specs)) or 'none'})")
        spec = specs[part]
        _require(not spec.get("pii"), filename, where, f"{path!r} is personal data (pii): models do not learn from it")
        if depth < len(parts) - 1:
            _require(spec["type"] == "object", filename, where, f"{path!r}: {part} is a {spec['type']}, not an object")
            specs = spec["properties"]
    allowed = KINDS_FOR_FIELD.get(spec.get("type", ""), set())
    _require(kind in allowed, filename, where, f"{path!r} is a {spec.get('type')} field: it cannot be a {kind} column")


def _data(doc: dict[str, Any], filename: str, catalog: Any) -> DataSpec:
    data = _mapping(doc, "data", filename, "data")
    _known_keys(data, {"event_type", "lookback_days", "columns", "label", "features", "max_rows", "stratify_by",
                       "holdout_fraction", "seed"}, filename, "data")
    event_type_name = _text(data, "event_type", filename, "data.event_type")
    event_type = None
    if catalog is not None:
        event_type = catalog.get(event_type_name)
        _require(event_type is not None, filename, "data.event_type",
                 f"{event_type_name!r} is not an event type (known: {', '.join(sorted(catalog.types))})")
    lookback = _integer(data.get("lookback_days"), filename, "data.lookback_days", low=1, high=3660)

    raw_columns = _mapping(data, "columns", filename, "data.columns")
    _require(bool(raw_columns), filename, "data.columns", "declare at least one column")
    columns: list[Column] = []
    for name, spec in raw_columns.items():
        where = f"data.columns.{name}"
        _require(isinstance(name, str) and COLUMN_PATTERN.match(name) is not None, filename, where,
                 "column names are snake_case ASCII, at most 63 characters")
        _require(name != "default", filename, where, "'default' is reserved (it sets defaults in checks)")
        _require(isinstance(spec, dict), filename, where, "a column is a mapping with path and kind")
        _known_keys(spec, {"path", "kind"}, filename, where)
        path, kind = spec.get("path"), spec.get("kind")
        _require(isinstance(path, str) and len(path.split(".")) >= 2 and all(path.split("."))
                 and path.split(".")[0] in ("properties", "context"), filename, f"{where}.path",
                 f"{path!r}: a path is properties.<field>[.<sub>] or context.<field>[.<sub>...]")
        _require(kind in KINDS, filename, f"{where}.kind", f"{kind!r}: use one of {', '.join(KINDS)}")
        if event_type is not None:
            _resolve_column_path(path, event_type, catalog, kind, filename, f"{where}.path")
        columns.append(Column(name, path, kind))
    names = {c.name: c.kind for c in columns}

    raw_label = _mapping(data, "label", filename, "data.label")
    _known_keys(raw_label, {"name", "column", "to_eur"}, filename, "data.label")
    label_column = raw_label.get("column")
    _require(label_column in names, filename, "data.label.column",
             f"{label_column!r} is not a column (columns: {', '.join(names)})")
    label_name = raw_label.get("name", label_column)
    _require(isinstance(label_name, str) and COLUMN_PATTERN.match(label_name) is not None and label_name != "default",
             filename, "data.label.name", "a snake_case column name")
    label_kind = names[label_column]
    _require(label_kind in ("numeric", "categorical"), filename, "data.label.column",
             f"a label is numeric (regression) or categorical (classification), not {label_kind}")
    currency_column, rates = None, {}
    if "to_eur" in raw_label:
        to_eur = _mapping(raw_label, "to_eur", filename, "data.label.to_eur")
        _known_keys(to_eur, {"currency_column", "rates"}, filename, "data.label.to_eur")
        _require(label_kind == "numeric", filename, "data.label.to_eur", "only a numeric label converts to euros")
        currency_column = to_eur.get("currency_column")
        _require(currency_column in names, filename, "data.label.to_eur.currency_column",
                 f"{currency_column!r} is not a column (columns: {', '.join(names)})")
        raw_rates = _mapping(to_eur, "rates", filename, "data.label.to_eur.rates")
        _require(bool(raw_rates), filename, "data.label.to_eur.rates", "give at least one currency: units per euro")
        for code, rate in raw_rates.items():
            where = f"data.label.to_eur.rates.{code}"
            _require(isinstance(code, str) and re.fullmatch(r"[A-Z]{3}", code) is not None, filename, where,
                     "currency codes are ISO 4217 (three capital letters)")
            _require(_is_number(rate) and rate > 0, filename, where, "a rate is a positive number of units per euro")
            rates[code] = float(rate)
        _require(rates.get("EUR", 1.0) == 1.0, filename, "data.label.to_eur.rates.EUR", "one euro is 1.0 EUR")
    if label_name != label_column:
        _require(label_name not in names, filename, "data.label.name",
                 f"{label_name!r} is already a column; the derived label needs its own name")
    else:
        _require(currency_column is None, filename, "data.label.name",
                 "a label converted to euros needs its own name (e.g. price_eur)")
    label = Label(label_name, label_column, label_kind, currency_column, MappingProxyType(rates))

    features = data.get("features")
    _require(isinstance(features, list) and features and all(isinstance(f, str) for f in features), filename,
             "data.features", "a non-empty list of column names")
    for i, feature in enumerate(features):
        _require(feature in names, filename, f"data.features[{i}]", f"{feature!r} is not a column")
        _require(feature not in (label_column, label_name), filename, f"data.features[{i}]",
                 f"{feature!r} is the label: a model must not see its answer")
    _require(len(set(features)) == len(features), filename, "data.features", "duplicate features")
    stratify_by = data.get("stratify_by")
    _require(stratify_by in names or stratify_by == label_name, filename, "data.stratify_by",
             f"{stratify_by!r} is not a column")
    stratum_kind = label_kind if stratify_by == label_name else names.get(stratify_by)
    _require(stratum_kind in ("categorical", "boolean"), filename, "data.stratify_by",
             f"{stratify_by!r} is {stratum_kind}: stratify on a categorical or boolean column")
    return DataSpec(
        event_type=event_type_name, lookback_days=lookback, columns=tuple(columns), label=label,
        features=tuple(features),
        max_rows=_integer(data.get("max_rows"), filename, "data.max_rows", low=10, high=MAX_ROWS_LIMIT),
        stratify_by=stratify_by,
        holdout_fraction=_number(data.get("holdout_fraction", 0.2), filename, "data.holdout_fraction", low=0.05,
                                 high=0.5),
        seed=_integer(data.get("seed", 0), filename, "data.seed", low=0, high=2 ** 32 - 1),
    )


def _checks(doc: dict[str, Any], filename: str, data: DataSpec) -> CheckSpec:
    checks = _mapping(doc, "checks", filename, "checks")
    _known_keys(checks, {"min_rows", "max_null_rate", "ranges", "drift"}, filename, "checks")
    kinds = data.kinds
    null_rates = _per_column(checks.get("max_null_rate", 0.0), kinds, filename, "checks.max_null_rate", default=0.0,
                             high=1.0)
    ranges: list[RangeRule] = []
    for column, rule in _mapping(checks, "ranges", filename, "checks.ranges", required=False).items():
        where = f"checks.ranges.{column}"
        _require(column in kinds, filename, where, f"no column {column!r} (columns: {', '.join(kinds)})")
        _require(isinstance(rule, dict), filename, where, "a mapping: min/max, or values")
        _known_keys(rule, {"min", "max", "values", "max_violation_rate"}, filename, where)
        rate = _number(rule.get("max_violation_rate", 0.0), filename, f"{where}.max_violation_rate", low=0, high=1)
        if kinds[column] == "numeric":
            _require("values" not in rule, filename, f"{where}.values", "a numeric column takes min/max")
            _require("min" in rule or "max" in rule, filename, where, "give min, max or both")
            low = _number(rule["min"], filename, f"{where}.min") if "min" in rule else None
            high = _number(rule["max"], filename, f"{where}.max") if "max" in rule else None
            _require(low is None or high is None or low <= high, filename, where, "min is above max")
            ranges.append(RangeRule(column, low, high, None, rate))
        else:
            values = rule.get("values")
            _require(not ({"min", "max"} & set(rule)), filename, where, f"a {kinds[column]} column takes values")
            _require(isinstance(values, list) and values and all(isinstance(v, (str, bool)) for v in values),
                     filename, f"{where}.values", "a non-empty list of allowed values")
            ranges.append(RangeRule(column, None, None, tuple(values), rate))

    drift = _mapping(checks, "drift", filename, "checks.drift", required=False)
    _known_keys(drift, {"columns", "max_psi", "bins", "top_categories"}, filename, "checks.drift")
    drift_columns = drift.get("columns", [])
    _require(isinstance(drift_columns, list), filename, "checks.drift.columns", "a list of column names")
    for i, column in enumerate(drift_columns):
        _require(column in kinds, filename, f"checks.drift.columns[{i}]", f"no column {column!r}")
        _require(kinds[column] in ("numeric", "categorical", "boolean"), filename, f"checks.drift.columns[{i}]",
                 f"{column!r} is {kinds[column]}: drift is measured on numeric, categorical or boolean columns")
    drifting = {c: kinds[c] for c in drift_columns}
    limits = _per_column(drift.get("max_psi", 0.2), drifting, filename, "checks.drift.max_psi", default=0.2,
                         high=None) if drifting else {}
    return CheckSpec(
        min_rows=_integer(checks.get("min_rows", 1), filename, "checks.min_rows", low=1),
        max_null_rate=MappingProxyType(null_rates), ranges=tuple(ranges),
        drift=tuple(DriftRule(c, limits[c]) for c in drift_columns),
        bins=_integer(drift.get("bins", 10), filename, "checks.drift.bins", low=2, high=100),
        top_categories=_integer(drift.get("top_categories", 50), filename, "checks.drift.top_categories", low=1,
                                high=1000),
    )


def _evaluation(doc: dict[str, Any], filename: str) -> EvaluationSpec:
    evaluation = _mapping(doc, "evaluation", filename, "evaluation")
    _known_keys(evaluation, {"metrics", "thresholds", "relative_to_current", "relative_confidence"}, filename,
                "evaluation")
    metrics = evaluation.get("metrics")
    _require(isinstance(metrics, list) and metrics, filename, "evaluation.metrics", "a non-empty list of metrics")
    for i, metric in enumerate(metrics):
        _require(metric in METRICS, filename, f"evaluation.metrics[{i}]",
                 f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    thresholds = []
    for metric, rule in _mapping(evaluation, "thresholds", filename, "evaluation.thresholds", required=False).items():
        where = f"evaluation.thresholds.{metric}"
        _require(metric in metrics, filename, where, f"{metric!r} is not in evaluation.metrics")
        _require(isinstance(rule, dict) and rule and set(rule) <= {"min", "max"}, filename, where,
                 "a mapping with min, max or both")
        thresholds.append(MetricThreshold(metric, *(_number(rule[k], filename, f"{where}.{k}") if k in rule else None
                                                    for k in ("min", "max"))))
    relative = []
    for metric, rule in _mapping(evaluation, "relative_to_current", filename, "evaluation.relative_to_current",
                                 required=False).items():
        where = f"evaluation.relative_to_current.{metric}"
        _require(metric in metrics, filename, where, f"{metric!r} is not in evaluation.metrics")
        _require(isinstance(rule, dict) and set(rule) == {"max_worse"}, filename, where,
                 "a mapping with max_worse (0.02 = at most 2 % worse than the current model)")
        relative.append(RelativeThreshold(metric, _number(rule["max_worse"], filename, f"{where}.max_worse", low=0,
                                                          high=10)))
    _require(bool(thresholds), filename, "evaluation.thresholds",
             "at least one absolute threshold: a model that is judged on nothing is never refused")
    confidence = None
    if evaluation.get("relative_confidence") is not None:
        confidence = _number(evaluation["relative_confidence"], filename, "evaluation.relative_confidence", low=0.5,
                             high=0.999)
    return EvaluationSpec(tuple(metrics), tuple(thresholds), tuple(relative), confidence)


def _endpoints(serving: dict[str, Any], filename: str, data: DataSpec) -> tuple[Endpoint, ...]:
    raw = serving.get("endpoints")
    _require(isinstance(raw, list) and raw, filename, "serving.endpoints", "a non-empty list of endpoints")
    endpoints: list[Endpoint] = []
    for i, spec in enumerate(raw):
        where = f"serving.endpoints[{i}]"
        _require(isinstance(spec, dict), filename, where, "an endpoint is a mapping: path, method, inputs, outputs")
        _known_keys(spec, {"path", "method", "inputs", "outputs"}, filename, where)
        path = spec.get("path")
        _require(isinstance(path, str) and ENDPOINT_PATTERN.match(path) is not None, filename, f"{where}.path",
                 f"{path!r}: a path such as /v1/price-suggestion (lower case)")
        _require(path not in {e.path for e in endpoints}, filename, f"{where}.path", f"{path} is declared twice")
        method = spec.get("method", "POST")
        _require(method in METHODS, filename, f"{where}.method", f"{method!r}: use one of {', '.join(METHODS)}")
        raw_inputs = _mapping(spec, "inputs", filename, f"{where}.inputs")
        _require(bool(raw_inputs), filename, f"{where}.inputs", "declare at least one input")
        inputs = et.normalise_properties(raw_inputs, filename, f"{where}.inputs")
        for name, field_spec in inputs.items():
            _require(field_spec["type"] in INPUT_TYPES, filename, f"{where}.inputs.{name}.type",
                     f"serving inputs are {', '.join(INPUT_TYPES)}, not {field_spec['type']}")
        for feature in data.features:
            _require(feature in inputs, filename, f"{where}.inputs",
                     f"the model's feature {feature!r} is not an input of this endpoint")
        outputs = spec.get("outputs")
        _require(isinstance(outputs, list) and outputs and all(isinstance(o, str) for o in outputs), filename,
                 f"{where}.outputs", "a non-empty list of output field names")
        check = et.compile_object(inputs, "input", 2, additional=False)
        endpoints.append(Endpoint(path, method, MappingProxyType(inputs), tuple(outputs), check))
    return tuple(endpoints)


def _guard_rails(doc: dict[str, Any], filename: str, endpoints: tuple[Endpoint, ...]) -> GuardRails:
    rails = _mapping(doc, "guard_rails", filename, "guard_rails")
    _known_keys(rails, {"output", "max_change", "kill_switch"}, filename, "guard_rails")
    output = _mapping(rails, "output", filename, "guard_rails.output")
    _known_keys(output, {"field", "min", "max"}, filename, "guard_rails.output")
    output_field = output.get("field")
    _require(all(output_field in e.outputs for e in endpoints), filename, "guard_rails.output.field",
             f"{output_field!r} is not an output of every endpoint")
    low = _number(output.get("min"), filename, "guard_rails.output.min")
    high = _number(output.get("max"), filename, "guard_rails.output.max")
    _require(low < high, filename, "guard_rails.output", "min must be below max")
    change = _mapping(rails, "max_change", filename, "guard_rails.max_change")
    _known_keys(change, {"max_relative", "window"}, filename, "guard_rails.max_change")
    kill = _mapping(rails, "kill_switch", filename, "guard_rails.kill_switch")
    _known_keys(kill, {"env"}, filename, "guard_rails.kill_switch")
    env = kill.get("env")
    _require(isinstance(env, str) and ENV_PATTERN.match(env) is not None, filename, "guard_rails.kill_switch.env",
             "an environment variable name in capitals, e.g. PRICE_SUGGESTION_DISABLED")
    return GuardRails(
        output_field=output_field, output_min=low, output_max=high,
        max_change_relative=_number(change.get("max_relative"), filename, "guard_rails.max_change.max_relative",
                                    low=0.0),
        max_change_window_seconds=parse_window(change.get("window"), filename, "guard_rails.max_change.window"),
        kill_switch_env=env,
    )


def _expectation(field_name: str, rule: Any, filename: str, where: str) -> Expectation:
    _require(isinstance(rule, dict) and rule, filename, where, "a mapping: min/max, equals, or value + tolerance")
    _known_keys(rule, {"min", "max", "equals", "value", "tolerance"}, filename, where)
    if "equals" in rule:
        _require(len(rule) == 1, filename, where, "equals stands alone")
        return Expectation(field_name, equals=rule["equals"])
    if "value" in rule or "tolerance" in rule:
        _require(set(rule) == {"value", "tolerance"}, filename, where, "value and tolerance go together, alone")
        return Expectation(field_name, value=_number(rule["value"], filename, f"{where}.value"),
                           tolerance=_number(rule["tolerance"], filename, f"{where}.tolerance", low=0, high=10))
    low = _number(rule["min"], filename, f"{where}.min") if "min" in rule else None
    high = _number(rule["max"], filename, f"{where}.max") if "max" in rule else None
    _require(low is None or high is None or low <= high, filename, where, "min is above max")
    return Expectation(field_name, min=low, max=high)


def _golden_requests(doc: dict[str, Any], filename: str, endpoints: tuple[Endpoint, ...]) -> tuple[GoldenRequest, ...]:
    raw = doc.get("golden_requests")
    _require(isinstance(raw, list) and raw, filename, "golden_requests",
             "a non-empty list: the validator needs known requests to check a new model against")
    by_path = {e.path: e for e in endpoints}
    out: list[GoldenRequest] = []
    for i, spec in enumerate(raw):
        where = f"golden_requests[{i}]"
        _require(isinstance(spec, dict), filename, where, "a mapping: name, endpoint, input, expect")
        _known_keys(spec, {"name", "endpoint", "input", "expect"}, filename, where)
        name = spec.get("name")
        _require(isinstance(name, str) and COLUMN_PATTERN.match(name) is not None, filename, f"{where}.name",
                 "a snake_case name")
        _require(name not in {g.name for g in out}, filename, f"{where}.name", f"{name!r} is used twice")
        path = spec.get("endpoint", endpoints[0].path)
        _require(path in by_path, filename, f"{where}.endpoint", f"{path!r} is not a declared endpoint")
        endpoint = by_path[path]
        request = _mapping(spec, "input", filename, f"{where}.input")
        try:
            endpoint.validate(request)
        except InvalidModelInput as error:
            field_where = f"{where}.input.{error.field}" if error.field else f"{where}.input"
            raise DefinitionError(filename, field_where, f"the endpoint refuses it: [{error.reason}] "
                                                         f"{error.message}") from None
        expect = _mapping(spec, "expect", filename, f"{where}.expect")
        _require(bool(expect), filename, f"{where}.expect", "say what the answer must hold")
        expectations = []
        for field_name, rule in expect.items():
            _require(field_name in endpoint.outputs, filename, f"{where}.expect.{field_name}",
                     f"{field_name!r} is not an output of {path}")
            expectations.append(_expectation(field_name, rule, filename, f"{where}.expect.{field_name}"))
        out.append(GoldenRequest(name, path, MappingProxyType(dict(request)), tuple(expectations)))
    return tuple(out)


def _trusted_types(doc: dict[str, Any], filename: str) -> tuple[str, ...]:
    artifact = _mapping(doc, "artifact", filename, "artifact", required=False)
    _known_keys(artifact, {"trusted_types"}, filename, "artifact")
    extra = artifact.get("trusted_types", [])
    _require(isinstance(extra, list), filename, "artifact.trusted_types", "a list of module.Class names")
    for i, name in enumerate(extra):
        _require(isinstance(name, str) and TYPE_PATTERN.match(name) is not None, filename,
                 f"artifact.trusted_types[{i}]", f"{name!r} is not a dotted module.Class name")
        _require(name not in ("builtins.eval", "builtins.exec", "builtins.getattr", "builtins.__import__")
                 and not name.startswith(("os.", "subprocess.", "posix.", "nt.", "shutil.", "pickle.", "marshal.")),
                 filename, f"artifact.trusted_types[{i}]", f"{name} can run code: it is never trusted")
    return tuple(dict.fromkeys([*BASE_TRUSTED_TYPES, *extra]))


def parse_definition(doc: Any, filename: str, *, catalog: Any = None, resolve: bool = True,
                     sha256: str | None = None) -> ModelDefinition:
    """Validate a parsed YAML document; ``filename`` is what errors name.

    ``catalog`` (:class:`handlers.tracking.event_types.Catalog`) adds the checks of column paths against the
    event type; ``resolve`` imports the entry points (tools that only read the file can skip it). ``sha256``
    identifies the definition in every model's metadata: the file's hash when loaded from a file, else the
    hash of the document's canonical JSON.
    """
    if sha256 is None:
        sha256 = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    _require(isinstance(doc, dict), filename, None, "must be a mapping: name, description, owner, data, ...")
    _known_keys(doc, TOP_LEVEL_KEYS, filename, None)
    for key in REQUIRED_TOP_LEVEL:
        _require(key in doc, filename, key, "required")
    name = doc.get("name")
    _require(isinstance(name, str) and NAME_PATTERN.match(name) is not None, filename, "name",
             "snake_case ASCII such as price_suggestion")
    stem = Path(filename).stem
    _require(stem == name, filename, "name", f"must match the file name ({stem})")
    data = _data(doc, filename, catalog)
    checks = _checks(doc, filename, data)
    training = _mapping(doc, "training", filename, "training")
    _known_keys(training, {"entry_point", "predict_batch"}, filename, "training")
    serving = _mapping(doc, "serving", filename, "serving")
    _known_keys(serving, {"predict", "endpoints"}, filename, "serving")
    endpoints = _endpoints(serving, filename, data)
    return ModelDefinition(
        name=name, description=_text(doc, "description", filename, "description"),
        owner=_text(doc, "owner", filename, "owner"), filename=filename, sha256=sha256, data=data, checks=checks,
        train=_entry_point(training.get("entry_point"), filename, "training.entry_point", resolve=resolve),
        predict_batch=_entry_point(training.get("predict_batch"), filename, "training.predict_batch",
                                   resolve=resolve),
        predict=_entry_point(serving.get("predict"), filename, "serving.predict", resolve=resolve),
        evaluation=_evaluation(doc, filename), trusted_types=_trusted_types(doc, filename), endpoints=endpoints,
        guard_rails=_guard_rails(doc, filename, endpoints),
        golden_requests=_golden_requests(doc, filename, endpoints),
    )


def load_definition(path: Path | str, *, catalog: Any = None, resolve: bool = True) -> ModelDefinition:
    """Load and validate ``models/<name>.yaml``; raise :class:`DefinitionError` naming the file and field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DefinitionError(path.name, None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DefinitionError(path.name, None, f"not valid YAML: {exc}") from None
    return parse_definition(doc, path.name, catalog=catalog, resolve=resolve, sha256=hashlib.sha256(raw).hexdigest())


def load_definitions(directory: Path | str, *, catalog: Any = None, resolve: bool = True) -> dict[str, ModelDefinition]:
    """Every ``*.yaml`` under ``directory`` (the serving wrapper and validator load them all at start-up)."""
    out = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        definition = load_definition(path, catalog=catalog, resolve=resolve)
        out[definition.name] = definition
    return out
