"""The ``data`` and ``checks`` sections of a model definition: what the model learns from, and what that data
must look like before any training starts.

With the event-type catalog at hand, every column path is checked against the event type: declared, not
personal data (``pii``), of a type the column's kind can hold — a definition cannot train on a field no
event carries, or on an e-mail address. The label (optionally converted to euros), the features, the
stratification column and every check (null rates, ranges, drift) must name declared columns.
"""
from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

from handlers.ml.dataset import KINDS
from handlers.ml.definition_fields import COLUMN_PATTERN, integer, mapping, number, per_column, text
from handlers.ml.definition_types import CheckSpec, Column, DataSpec, DriftRule, Label, RangeRule
from handlers.schema.paths import field_spec
from handlers.schema.rules import is_number, known_keys, require

# Which column kinds an event field of each type can feed.
KINDS_FOR_FIELD = {"string": {"text", "categorical"}, "enum": {"categorical", "text"},
                   "integer": {"numeric", "categorical"}, "number": {"numeric"},
                   "boolean": {"boolean", "categorical"}}
MAX_ROWS_LIMIT = 10_000_000


def resolve_column_path(path: str, event_type: Any, catalog: Any, kind: str, filename: str, where: str) -> None:
    """Check a column path against the event type: declared, not personal data, a type the kind can hold."""
    spec = field_spec(path, event_type, catalog, filename, where, no_pii="models do not learn from it")
    allowed = KINDS_FOR_FIELD.get(spec.get("type", ""), set())
    require(kind in allowed, filename, where, f"{path!r} is a {spec.get('type')} field: it cannot be a {kind} column")


def parse_data(doc: dict[str, Any], filename: str, catalog: Any) -> DataSpec:
    data = mapping(doc, "data", filename, "data")
    known_keys(data, {"event_type", "lookback_days", "columns", "label", "features", "max_rows", "stratify_by",
                      "holdout_fraction", "seed"}, filename, "data")
    event_type_name = text(data, "event_type", filename, "data.event_type")
    event_type = None
    if catalog is not None:
        event_type = catalog.get(event_type_name)
        require(event_type is not None, filename, "data.event_type",
                f"{event_type_name!r} is not an event type (known: {', '.join(sorted(catalog.types))})")
    lookback = integer(data.get("lookback_days"), filename, "data.lookback_days", low=1, high=3660)

    raw_columns = mapping(data, "columns", filename, "data.columns")
    require(bool(raw_columns), filename, "data.columns", "declare at least one column")
    columns: list[Column] = []
    for name, spec in raw_columns.items():
        where = f"data.columns.{name}"
        require(isinstance(name, str) and COLUMN_PATTERN.match(name) is not None, filename, where,
                "column names are snake_case ASCII, at most 63 characters")
        require(name != "default", filename, where, "'default' is reserved (it sets defaults in checks)")
        require(isinstance(spec, dict), filename, where, "a column is a mapping with path and kind")
        known_keys(spec, {"path", "kind"}, filename, where)
        path, kind = spec.get("path"), spec.get("kind")
        require(isinstance(path, str) and len(path.split(".")) >= 2 and all(path.split("."))
                and path.split(".")[0] in ("properties", "context"), filename, f"{where}.path",
                f"{path!r}: a path is properties.<field>[.<sub>] or context.<field>[.<sub>...]")
        require(kind in KINDS, filename, f"{where}.kind", f"{kind!r}: use one of {', '.join(KINDS)}")
        if event_type is not None:
            resolve_column_path(path, event_type, catalog, kind, filename, f"{where}.path")
        columns.append(Column(name, path, kind))
    names = {c.name: c.kind for c in columns}

    raw_label = mapping(data, "label", filename, "data.label")
    known_keys(raw_label, {"name", "column", "to_eur"}, filename, "data.label")
    label_column = raw_label.get("column")
    require(label_column in names, filename, "data.label.column",
            f"{label_column!r} is not a column (columns: {', '.join(names)})")
    label_name = raw_label.get("name", label_column)
    require(isinstance(label_name, str) and COLUMN_PATTERN.match(label_name) is not None and label_name != "default",
            filename, "data.label.name", "a snake_case column name")
    label_kind = names[label_column]
    require(label_kind in ("numeric", "categorical"), filename, "data.label.column",
            f"a label is numeric (regression) or categorical (classification), not {label_kind}")
    currency_column, rates = None, {}
    if "to_eur" in raw_label:
        to_eur = mapping(raw_label, "to_eur", filename, "data.label.to_eur")
        known_keys(to_eur, {"currency_column", "rates"}, filename, "data.label.to_eur")
        require(label_kind == "numeric", filename, "data.label.to_eur", "only a numeric label converts to euros")
        currency_column = to_eur.get("currency_column")
        require(currency_column in names, filename, "data.label.to_eur.currency_column",
                f"{currency_column!r} is not a column (columns: {', '.join(names)})")
        raw_rates = mapping(to_eur, "rates", filename, "data.label.to_eur.rates")
        require(bool(raw_rates), filename, "data.label.to_eur.rates", "give at least one currency: units per euro")
        for code, rate in raw_rates.items():
            where = f"data.label.to_eur.rates.{code}"
            require(isinstance(code, str) and re.fullmatch(r"[A-Z]{3}", code) is not None, filename, where,
                    "currency codes are ISO 4217 (three capital letters)")
            require(is_number(rate) and rate > 0, filename, where, "a rate is a positive number of units per euro")
            rates[code] = float(rate)
        require(rates.get("EUR", 1.0) == 1.0, filename, "data.label.to_eur.rates.EUR", "one euro is 1.0 EUR")
    if label_name != label_column:
        require(label_name not in names, filename, "data.label.name",
                f"{label_name!r} is already a column; the derived label needs its own name")
    else:
        require(currency_column is None, filename, "data.label.name",
                "a label converted to euros needs its own name (e.g. price_eur)")
    label = Label(label_name, label_column, label_kind, currency_column, MappingProxyType(rates))

    features = data.get("features")
    require(isinstance(features, list) and features and all(isinstance(f, str) for f in features), filename,
            "data.features", "a non-empty list of column names")
    for i, feature in enumerate(features):
        require(feature in names, filename, f"data.features[{i}]", f"{feature!r} is not a column")
        require(feature not in (label_column, label_name), filename, f"data.features[{i}]",
                f"{feature!r} is the label: a model must not see its answer")
    require(len(set(features)) == len(features), filename, "data.features", "duplicate features")
    stratify_by = data.get("stratify_by")
    require(stratify_by in names or stratify_by == label_name, filename, "data.stratify_by",
            f"{stratify_by!r} is not a column")
    stratum_kind = label_kind if stratify_by == label_name else names.get(stratify_by)
    require(stratum_kind in ("categorical", "boolean"), filename, "data.stratify_by",
            f"{stratify_by!r} is {stratum_kind}: stratify on a categorical or boolean column")
    return DataSpec(
        event_type=event_type_name, lookback_days=lookback, columns=tuple(columns), label=label,
        features=tuple(features),
        max_rows=integer(data.get("max_rows"), filename, "data.max_rows", low=10, high=MAX_ROWS_LIMIT),
        stratify_by=stratify_by,
        holdout_fraction=number(data.get("holdout_fraction", 0.2), filename, "data.holdout_fraction", low=0.05,
                                high=0.5),
        seed=integer(data.get("seed", 0), filename, "data.seed", low=0, high=2 ** 32 - 1),
    )


def parse_checks(doc: dict[str, Any], filename: str, data: DataSpec) -> CheckSpec:
    checks = mapping(doc, "checks", filename, "checks")
    known_keys(checks, {"min_rows", "max_null_rate", "ranges", "drift"}, filename, "checks")
    kinds = data.kinds
    null_rates = per_column(checks.get("max_null_rate", 0.0), kinds, filename, "checks.max_null_rate", default=0.0,
                            high=1.0)
    ranges: list[RangeRule] = []
    for column, rule in mapping(checks, "ranges", filename, "checks.ranges", required=False).items():
        where = f"checks.ranges.{column}"
        require(column in kinds, filename, where, f"no column {column!r} (columns: {', '.join(kinds)})")
        require(isinstance(rule, dict), filename, where, "a mapping: min/max, or values")
        known_keys(rule, {"min", "max", "values", "max_violation_rate"}, filename, where)
        rate = number(rule.get("max_violation_rate", 0.0), filename, f"{where}.max_violation_rate", low=0, high=1)
        if kinds[column] == "numeric":
            require("values" not in rule, filename, f"{where}.values", "a numeric column takes min/max")
            require("min" in rule or "max" in rule, filename, where, "give min, max or both")
            low = number(rule["min"], filename, f"{where}.min") if "min" in rule else None
            high = number(rule["max"], filename, f"{where}.max") if "max" in rule else None
            require(low is None or high is None or low <= high, filename, where, "min is above max")
            ranges.append(RangeRule(column, low, high, None, rate))
        else:
            values = rule.get("values")
            require(not ({"min", "max"} & set(rule)), filename, where, f"a {kinds[column]} column takes values")
            require(isinstance(values, list) and values and all(isinstance(v, (str, bool)) for v in values),
                    filename, f"{where}.values", "a non-empty list of allowed values")
            ranges.append(RangeRule(column, None, None, tuple(values), rate))

    drift = mapping(checks, "drift", filename, "checks.drift", required=False)
    known_keys(drift, {"columns", "max_psi", "bins", "top_categories"}, filename, "checks.drift")
    drift_columns = drift.get("columns", [])
    require(isinstance(drift_columns, list), filename, "checks.drift.columns", "a list of column names")
    for i, column in enumerate(drift_columns):
        require(column in kinds, filename, f"checks.drift.columns[{i}]", f"no column {column!r}")
        require(kinds[column] in ("numeric", "categorical", "boolean"), filename, f"checks.drift.columns[{i}]",
                f"{column!r} is {kinds[column]}: drift is measured on numeric, categorical or boolean columns")
    drifting = {c: kinds[c] for c in drift_columns}
    limits = per_column(drift.get("max_psi", 0.2), drifting, filename, "checks.drift.max_psi", default=0.2,
                        high=None) if drifting else {}
    return CheckSpec(
        min_rows=integer(checks.get("min_rows", 1), filename, "checks.min_rows", low=1),
        max_null_rate=MappingProxyType(null_rates), ranges=tuple(ranges),
        drift=tuple(DriftRule(c, limits[c]) for c in drift_columns),
        bins=integer(drift.get("bins", 10), filename, "checks.drift.bins", low=2, high=100),
        top_categories=integer(drift.get("top_categories", 50), filename, "checks.drift.top_categories", low=1,
                               high=1000),
    )
