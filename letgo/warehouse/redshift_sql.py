"""Redshift SQL on the local warehouse: sqlglot's Redshift → DuckDB translation, and what it cannot know alone.

Why: analysts write Redshift SQL (the README's first query, the notebook, the Redshift query editor), and the
local warehouse is DuckDB. Without a translation the README's own query fails locally ("Scalar Function with
name dateadd does not exist") and every query has to be written twice. sqlglot translates most of the dialect
(``DATEADD``, ``DATEDIFF``, ``GETDATE()``, ``NVL``, ``DECODE``, ``LISTAGG … WITHIN GROUP``,
``APPROXIMATE COUNT(DISTINCT …)``, ``TO_CHAR``, window functions). What it cannot do from the text alone, this
module does with the warehouse's schema (:class:`WarehouseSchema`, built from the views and the event types):

* ``TRUNC(<date or timestamp>)`` is Redshift's day truncation and returns a DATE; sqlglot keeps ``TRUNC``,
  which DuckDB only has for numbers. When the argument is known to be a date or timestamp (a timestamp column
  of the views, ``GETDATE()``, ``DATEADD(…)``, a cast …) it becomes ``CAST(x AS DATE)``.
* SUPER navigation — ``s.filters.min_price``, ``context.app.version``, ``s.filters.condition[0]`` — on the
  columns that are SUPER in Redshift (JSON here) becomes a JSON path, typed as the event type's YAML declares
  the leaf (a declared number is a DOUBLE, a string VARCHAR, an object or list JSON; an undeclared key is
  text). Array subscripts stay 0-based, as in Redshift.
* ``LISTAGG(DISTINCT x, ',')``: sqlglot mistakes the delimiter for a second DISTINCT argument; and
  ``LISTAGG(x)`` has no delimiter in Redshift (sqlglot writes ``','``).
* Integer arithmetic: ``COUNT(*) / COUNT(DISTINCT user_id)`` and ``AVG(<integer column>)`` are integers in
  Redshift (truncated); DuckDB's ``/`` and ``AVG`` give a DOUBLE, sqlglot keeps them: integer division
  becomes DuckDB's ``//``, the average ``CAST(TRUNC(AVG(x)) AS BIGINT)``.
* ``TO_CHAR`` formats ``Mon`` and ``Dy`` (month and weekday abbreviations), missing from sqlglot's mapping.
* An unaliased function in a select list is named as Redshift names it (``count``, ``trunc``), and a
  navigation by its last key, so the headers match the Redshift query editor's.
* ``GETDATE()`` is a TIMESTAMP in UTC to the second in Redshift (sqlglot: DuckDB's time-zone-aware
  ``CURRENT_TIMESTAMP``); the local warehouse's session time zone is UTC, as Redshift's.

A function DuckDB has no counterpart for is refused before running, by name, with the local equivalent from
:mod:`letgo.warehouse.equivalents` (:class:`NotLocal`); :func:`explain` adds the same kind of hint to a DuckDB
error raised while running.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.dialects.redshift import Redshift
from sqlglot.errors import ErrorLevel, ParseError, TokenError, UnsupportedError
from sqlglot.tokens import TokenType

from letgo.warehouse.equivalents import equivalent

DIALECTS = ("redshift", "duckdb")
SCALAR = {"string": "VARCHAR", "enum": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN",
          "timestamp": "TIMESTAMP"}
TEMPORAL_TYPES = (exp.DataType.Type.DATE, exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ,
                  exp.DataType.Type.TIMESTAMPLTZ, exp.DataType.Type.DATETIME)
# Expressions whose value is a date or timestamp whatever their arguments (names missing from a sqlglot
# version are skipped).
TEMPORAL_NODES = tuple(getattr(exp, name) for name in (
    "CurrentTimestamp", "CurrentDate", "CurrentDatetime", "DateAdd", "DateSub", "TsOrDsAdd", "TimestampAdd",
    "TimestampSub", "DatetimeAdd", "DatetimeSub", "DateTrunc", "TimestampTrunc", "DatetimeTrunc", "StrToTime",
    "StrToDate", "TimeStrToTime", "TsOrDsToDate", "TsOrDsToTimestamp", "ConvertTimezone", "AtTimeZone",
    "AddMonths", "LastDay", "UnixToTime", "NextDay") if hasattr(exp, name))
# Expressions that are integers in Redshift whatever their arguments.
INTEGER_NODES = tuple(getattr(exp, name) for name in (
    "Count", "RowNumber", "Rank", "DenseRank", "Ntile", "DateDiff", "Length") if hasattr(exp, name))
PASS_THROUGH = (exp.Paren, exp.Coalesce, exp.Min, exp.Max, exp.AnyValue, exp.First, exp.Last, exp.Lag, exp.Lead,
                exp.FirstValue, exp.LastValue, exp.NthValue, exp.Window, exp.Add, exp.Sub)


class LetgoRedshift(Redshift):
    """Redshift as sqlglot reads it, plus the ``TO_CHAR`` tokens its mapping lacks."""

    TIME_MAPPING = {**Redshift.TIME_MAPPING, "Mon": "%b", "Dy": "%a"}


class RedshiftSqlError(ValueError):
    """The SQL could not be made to run locally; the message says why (and what to write instead)."""


class NotLocal(RedshiftSqlError):
    """A Redshift function with no DuckDB counterpart: the message names it and its local equivalent."""

    def __init__(self, function: str, reason: str = "has no DuckDB translation") -> None:
        self.function = function.upper()
        self.equivalent = equivalent(self.function)
        local = (f"locally, write: {self.equivalent}" if self.equivalent else
                 "no known local equivalent: see SELECT function_name FROM duckdb_functions()")
        super().__init__(f"{self.function}() {reason}; {local} (and run with --dialect duckdb if the rest is "
                         f"DuckDB SQL too)")


@dataclass(frozen=True)
class WarehouseSchema:
    """What the translation needs to know about the warehouse.

    ``temporal``: column names that are a DATE or TIMESTAMP in every view that has them; ``integers``: those
    that are an integer in every view. ``navigable``: the SUPER (JSON) columns, each with its declared spec
    (``{"type": "object", "properties": …}``) or None when event types declare it differently. ``functions``:
    DuckDB's function names, lower case (empty: not checked).
    """

    temporal: frozenset[str] = frozenset()
    integers: frozenset[str] = frozenset()
    navigable: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)
    functions: frozenset[str] = frozenset()


def translate(sql: str, schema: WarehouseSchema) -> str:
    """``sql`` (one or more Redshift statements) as DuckDB SQL, statements joined by ``;``."""
    refuse_known_missing(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=LetgoRedshift) if s is not None
                      and not isinstance(s, exp.Semicolon)]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0]
        raise RedshiftSqlError(f"not Redshift SQL as sqlglot reads it: {first} (DuckDB SQL runs with "
                               f"--dialect duckdb)") from exc
    out = []
    for statement in statements:
        statement = rewrite(statement, schema)
        for node in statement.find_all(exp.Anonymous, exp.AnonymousAggFunc):
            name = node.name
            if schema.functions and name.lower() not in schema.functions:
                raise NotLocal(name, "is not a DuckDB function")
        try:
            out.append(statement.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE))
        except UnsupportedError as exc:
            function = _unsupported_function(str(exc))
            if function:
                raise NotLocal(function, "has no DuckDB translation") from exc
            raise RedshiftSqlError(f"sqlglot cannot translate this to DuckDB: {exc}") from exc
    return ";\n".join(out)


def refuse_known_missing(sql: str) -> None:
    """A call of a function :mod:`letgo.warehouse.equivalents` lists is refused by its name, before anything runs
    (sqlglot may have renamed it to another missing function by then: ``STRTOL`` → ``FROM_BASE``)."""
    try:
        tokens = LetgoRedshift().tokenize(sql)
    except TokenError:
        return  # the parser reports it
    for token, after in zip(tokens, tokens[1:]):
        if after.token_type == TokenType.L_PAREN and token.token_type != TokenType.STRING and equivalent(token.text):
            raise NotLocal(token.text)


def _unsupported_function(message: str) -> str | None:
    """The function an ``UnsupportedError`` is about ("Unsupported TO_NUMBER function", "SOUNDEX is not
    supported in DuckDB"), or None when it is about something else."""
    match = re.match(r"Unsupported ([A-Z_][A-Z0-9_]*) function|([A-Z_][A-Z0-9_]*) is not supported", message)
    return (match.group(1) or match.group(2)) if match else None


# -- rewrites ----------------------------------------------------------------------------------------------
def rewrite(statement: exp.Expression, schema: WarehouseSchema) -> exp.Expression:
    """``statement`` (Redshift) made ready for DuckDB: SUPER navigation first (outermost path wins), then the
    rest children-first, so that a rewritten argument is seen typed by its parent."""
    relations = {t.alias_or_name for t in statement.find_all(exp.Table)}
    relations |= {a.name for a in statement.find_all(exp.TableAlias) if a.name}
    schemas = {t.db for t in statement.find_all(exp.Table) if t.db}

    def navigate(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.Column, exp.Dot, exp.Bracket)):
            return _navigate(node, schema, relations, schemas) or node
        return node

    statement = statement.transform(navigate, copy=True)
    for node in reversed(list(statement.walk(bfs=False))):  # children before their parents
        new = _rewrite_node(node, schema)
        if new is not node:
            if node is statement:
                statement = new
            else:
                node.replace(new)
    return statement


def _rewrite_node(node: exp.Expression, schema: WarehouseSchema) -> exp.Expression:
    if isinstance(node, exp.Trunc) and not node.args.get("decimals") and is_temporal(node.this, schema):
        return _named(node, exp.Cast(this=node.this, to=exp.DataType.build("DATE")), "trunc")
    if isinstance(node, exp.CurrentTimestamp) and not node.args.get("sysdate"):
        # GETDATE(): a TIMESTAMP (no time zone) in UTC, to the second; SYSDATE keeps the microseconds
        now = exp.Cast(this=exp.CurrentTimestamp(), to=exp.DataType.build("TIMESTAMP"))
        return _named(node, exp.TimestampTrunc(this=now, unit=exp.var("SECOND")), "getdate")
    if isinstance(node, exp.GroupConcat):
        return _listagg(node)
    if isinstance(node, exp.Div) and is_integer(node.this, schema) and is_integer(node.expression, schema):
        # integer / integer is an integer in Redshift (truncated toward zero), a DOUBLE with DuckDB's `/`
        return exp.IntDiv(this=node.this, expression=node.expression)
    if isinstance(node, exp.Avg) and is_integer(node.this, schema):
        # AVG of an integer is a BIGINT in Redshift, the fraction truncated
        average = exp.Avg(this=node.this)
        return _named(node, exp.Cast(this=exp.Trunc(this=average), to=exp.DataType.build("BIGINT")), "avg")
    if isinstance(node, exp.Select):
        _name_functions(node)
    return node


def is_temporal(node: exp.Expression | None, schema: WarehouseSchema) -> bool:
    """Whether ``node`` is known to be a date or a timestamp (columns by the warehouse's types)."""
    if node is None:
        return False
    if isinstance(node, exp.Column):
        return node.name in schema.temporal
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return node.to.is_type(*TEMPORAL_TYPES)
    if isinstance(node, TEMPORAL_NODES):
        return True
    if isinstance(node, PASS_THROUGH):
        return is_temporal(node.this, schema)
    if isinstance(node, exp.Case):
        return any(is_temporal(branch.args.get("true"), schema) for branch in node.args.get("ifs", []))
    return False


def is_integer(node: exp.Expression | None, schema: WarehouseSchema) -> bool:
    """Whether ``node`` is known to be an integer in Redshift (columns by the warehouse's types)."""
    if node is None:
        return False
    if isinstance(node, exp.Literal):
        return not node.is_string and node.name.isdigit()
    if isinstance(node, exp.Column):
        return node.name in schema.integers
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return node.to.is_type(*exp.DataType.INTEGER_TYPES)
    if isinstance(node, INTEGER_NODES):
        return True
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.IntDiv, exp.Mod)):
        return is_integer(node.this, schema) and is_integer(node.expression, schema)
    # not SUM: the views' integers are BIGINT, and Redshift's SUM of a BIGINT is a NUMERIC (divides with a fraction)
    if isinstance(node, (exp.Min, exp.Max, exp.AnyValue, exp.Abs, exp.Paren, exp.Neg, exp.Window,
                         exp.Lag, exp.Lead, exp.FirstValue, exp.LastValue, exp.Coalesce)):
        return is_integer(node.this, schema)
    if isinstance(node, exp.Case):
        branches = [branch.args.get("true") for branch in node.args.get("ifs", [])] + [node.args.get("default")]
        return all(branch is None or is_integer(branch, schema) for branch in branches)
    return False


def _path(node: exp.Expression) -> list[str | int] | None:
    """``a.b.c[0].d`` as ``["a", "b", "c", 0, "d"]``; None for anything else."""
    if isinstance(node, exp.Column):
        if isinstance(node.this, exp.Star):
            return None
        return [part.name for part in node.parts]
    if isinstance(node, exp.Dot):
        left = _path(node.this)
        if left is None or not isinstance(node.expression, exp.Identifier):
            return None
        return [*left, node.expression.name]
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
        index = node.expressions[0]
        left = _path(node.this)
        if left is None or not (isinstance(index, exp.Literal) and not index.is_string and index.name.isdigit()):
            return None
        return [*left, int(index.name)]
    return None


def _navigate(node: exp.Expression, schema: WarehouseSchema, relations: set[str],
              schemas: set[str]) -> exp.Expression | None:
    """``s.filters.min_price`` → ``TRY_CAST(s.filters ->> '$.min_price' AS DOUBLE)`` (None: not a navigation)."""
    path = _path(node)
    if not path or not schema.navigable:
        return None
    start = 0
    if len(path) > 2 and path[0] in schemas and path[1] in relations:
        start = 2
    elif path[0] in relations and len(path) > 1:
        start = 1
    column, steps = path[start], path[start + 1:]
    if not isinstance(column, str) or column not in schema.navigable or not steps:
        return None
    if not all(isinstance(part, str) for part in path[:start + 1]):
        return None
    base = exp.column(column, table=path[start - 1] if start else None)
    json_path = exp.JSONPath(expressions=[exp.JSONPathRoot(), *(
        exp.JSONPathSubscript(this=step) if isinstance(step, int) else exp.JSONPathKey(this=step) for step in steps)])
    leaf = _leaf(schema.navigable[column], steps)
    if leaf is not None and SCALAR.get(leaf.get("type")) == "VARCHAR":
        value: exp.Expression = exp.Paren(this=exp.JSONExtractScalar(this=base, expression=json_path))
    elif leaf is not None and leaf.get("type") in SCALAR:
        value = exp.TryCast(this=exp.JSONExtractScalar(this=base, expression=json_path),
                            to=exp.DataType.build(SCALAR[leaf["type"]]))
    elif leaf is not None:  # a declared object, list or geo point: JSON, as SUPER
        value = exp.Paren(this=exp.JSONExtract(this=base, expression=json_path))
    else:  # not declared: its text
        value = exp.Paren(this=exp.JSONExtractScalar(this=base, expression=json_path))
    last = next((step for step in reversed(steps) if isinstance(step, str)), column)
    return _named(node, value, last)


def _leaf(spec: dict[str, Any] | None, steps: list[str | int]) -> dict[str, Any] | None:
    for step in steps:
        if spec is None:
            return None
        if isinstance(step, int):
            spec = spec.get("items") if spec.get("type") == "list" else None
        else:
            spec = (spec.get("properties") or {}).get(step) if spec.get("type") == "object" else None
    return spec


def _listagg(node: exp.GroupConcat) -> exp.GroupConcat:
    distinct = node.this
    if isinstance(distinct, exp.Distinct) and len(distinct.expressions) == 2 and node.args.get("separator") is None:
        value, separator = distinct.expressions
        return exp.GroupConcat(this=exp.Distinct(expressions=[value.copy()]), separator=separator.copy())
    if node.args.get("separator") is None:  # Redshift's default delimiter is none
        node = node.copy()
        node.set("separator", exp.Literal.string(""))
    return node


def _named(old: exp.Expression, new: exp.Expression, name: str) -> exp.Expression:
    """``new`` in place of ``old``, aliased ``name`` when ``old`` was an unaliased select-list item."""
    parent = old.parent
    if isinstance(parent, exp.Select) and old.arg_key == "expressions":
        return exp.alias_(new, name)
    return new


def _name_functions(select: exp.Select) -> None:
    """Unaliased function calls in ``select``'s list get the name Redshift gives them (``count``, ``trunc``)."""
    for item in list(select.expressions):
        if isinstance(item, (exp.Window, exp.WithinGroup)):
            target = item.this
        else:
            target = item
        if not isinstance(target, exp.Func) or isinstance(item, exp.Alias):
            continue
        text = target.sql(dialect=LetgoRedshift)
        match = re.match(r"(?:APPROXIMATE\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*\(", text)
        if match:
            item.replace(exp.alias_(item.copy(), match.group(1).lower()))


# -- errors while running ----------------------------------------------------------------------------------
MISSING = re.compile(r"(?:Scalar|Aggregate|Table) Function with name \"?([A-Za-z_][A-Za-z0-9_]*)\"? does not exist")
NO_MATCH = re.compile(r"No function matches the given name and argument types '([A-Za-z_][A-Za-z0-9_]*)\(([^)]*)\)'")


def explain(message: str) -> str | None:
    """A hint for a DuckDB error about a function (None when there is nothing to add)."""
    match = NO_MATCH.search(message)
    if match and match.group(1).lower() == "trunc" and re.search(r"DATE|TIMESTAMP", match.group(2)):
        return ("hint: TRUNC(date or timestamp) is Redshift's day truncation; the local translation rewrites it "
                "when it can tell the argument is a date (a view's column, GETDATE(), DATEADD …) — here it could "
                "not: write CAST(x AS DATE), which runs on both")
    match = match or MISSING.search(message)
    if match and equivalent(match.group(1)):
        return f"hint: {match.group(1).upper()}() locally: {equivalent(match.group(1))}"
    return None
