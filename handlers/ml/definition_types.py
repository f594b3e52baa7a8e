"""What a model definition *is*: the frozen values ``models/<name>.yaml`` is validated into.

A model's YAML says what it learns from (:class:`DataSpec`: an event type, :class:`Column` paths, the
:class:`Label`), what the data must look like before training (:class:`CheckSpec`), how a candidate is judged
(:class:`EvaluationSpec`), which code trains and answers (:class:`EntryPoint`), how it is served
(:class:`Endpoint`), what it may answer (:class:`GuardRails`) and which known requests must keep working
(:class:`GoldenRequest`) — all of it one :class:`ModelDefinition`.

These types live apart from the reading of the YAML (:mod:`handlers.ml.definition` and its section modules)
because far more code reads a definition than builds one: the training job, the data checks, the gates, the
serving wrapper, the guard rails and the validator take these values and never need the parser. A value of
these types is valid by construction when the loader made it; the few methods only apply it (read a column
from an event, judge an answer, check a request with the endpoint's compiled input checks).
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from handlers.ml.errors import InvalidModelInput
from handlers.tracking.errors import Invalid


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
        function = self.function or import_target(self.target)
        return function(*args, **kwargs)


@dataclass(frozen=True)
class Endpoint:
    """A serving route: typed, bounded inputs (event-type field specs) and the names of the outputs."""

    path: str
    method: str
    inputs: Mapping[str, Mapping[str, Any]]  # normalised field specs, as handlers.schema.event_types makes them
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

    * ``output_field`` is the guarded answer. A regression's (numeric label) must stay within [``output_min``,
      ``output_max``]: an answer outside is never served as is (clamped). A classifier's (categorical label) must
      be one of ``output_values``, with at least ``min_confidence`` in ``min_confidence_field`` when set:
      otherwise the wrapper abstains (answers ``null``).
    * ``max_change_relative`` / ``max_change_window_seconds`` (numeric only, optional): the answer to the same
      normalised input may move by at most a factor ``1 + max_change_relative`` per window, sliding. Training
      refuses a candidate whose median change against the current model on the holdout exceeds it.
    * ``kill_switch_env``: an environment variable that, when true, turns the model off (the store also keeps
      a kill switch per model, set by an operator with :mod:`handlers.ml.killswitch`, without a redeploy).
    """

    output_field: str
    output_min: float | None = None
    output_max: float | None = None
    max_change_relative: float | None = None
    max_change_window_seconds: int | None = None
    kill_switch_env: str = ""
    output_values: tuple[str, ...] | None = None
    min_confidence_field: str | None = None
    min_confidence: float | None = None

    @property
    def categorical(self) -> bool:
        return self.output_values is not None

    def output_problem(self, response: Mapping[str, Any]) -> str | None:
        value = response.get(self.output_field)
        if self.output_values is not None:
            if value not in self.output_values:
                return f"{self.output_field}: {value!r} is not one of the declared values"
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{self.output_field}: {value!r} is not a finite number"
        if not self.output_min <= value <= self.output_max:  # type: ignore[operator]
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


def import_target(target: str) -> Callable[..., Any]:
    """The function a ``module.path:function`` entry point names (importing its module)."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
