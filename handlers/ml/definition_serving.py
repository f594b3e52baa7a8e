"""The ``serving``, ``guard_rails`` and ``golden_requests`` sections of a model definition: how the model is
asked, what it may answer, and which known requests must keep working.

Serving inputs use the event types' field specs (``type: string|integer|number|boolean|enum`` with the same
bounds keys) and the same compiled checks (:func:`handlers.schema.event_types.compile_object`), so a request
is validated exactly as an event property would be. Every golden request's input goes through its endpoint's
own checks here, at load: a golden request the endpoint would refuse is a broken definition, not a failed
model.
"""
from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

from handlers.ml.definition_fields import COLUMN_PATTERN, mapping, number
from handlers.ml.definition_types import DataSpec, Endpoint, Expectation, GoldenRequest, GuardRails
from handlers.ml.errors import InvalidModelInput
from handlers.schema.errors import DefinitionError
from handlers.schema.event_types import compile_object, normalise_properties
from handlers.schema.rules import duration, known_keys, require

ENDPOINT_PATTERN = re.compile(r"^(/[a-z0-9][a-z0-9_.-]*)+$")
ENV_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
INPUT_TYPES = ("string", "integer", "number", "boolean", "enum")
METHODS = ("GET", "POST")


def parse_endpoints(serving: dict[str, Any], filename: str, data: DataSpec) -> tuple[Endpoint, ...]:
    raw = serving.get("endpoints")
    require(isinstance(raw, list) and raw, filename, "serving.endpoints", "a non-empty list of endpoints")
    endpoints: list[Endpoint] = []
    for i, spec in enumerate(raw):
        where = f"serving.endpoints[{i}]"
        require(isinstance(spec, dict), filename, where, "an endpoint is a mapping: path, method, inputs, outputs")
        known_keys(spec, {"path", "method", "inputs", "outputs"}, filename, where)
        path = spec.get("path")
        require(isinstance(path, str) and ENDPOINT_PATTERN.match(path) is not None, filename, f"{where}.path",
                f"{path!r}: a path such as /v1/price-suggestion (lower case)")
        require(path not in {e.path for e in endpoints}, filename, f"{where}.path", f"{path} is declared twice")
        method = spec.get("method", "POST")
        require(method in METHODS, filename, f"{where}.method", f"{method!r}: use one of {', '.join(METHODS)}")
        raw_inputs = mapping(spec, "inputs", filename, f"{where}.inputs")
        require(bool(raw_inputs), filename, f"{where}.inputs", "declare at least one input")
        inputs = normalise_properties(raw_inputs, filename, f"{where}.inputs")
        for name, field_spec in inputs.items():
            require(field_spec["type"] in INPUT_TYPES, filename, f"{where}.inputs.{name}.type",
                    f"serving inputs are {', '.join(INPUT_TYPES)}, not {field_spec['type']}")
        for feature in data.features:
            require(feature in inputs, filename, f"{where}.inputs",
                    f"the model's feature {feature!r} is not an input of this endpoint")
        outputs = spec.get("outputs")
        require(isinstance(outputs, list) and outputs and all(isinstance(o, str) for o in outputs), filename,
                f"{where}.outputs", "a non-empty list of output field names")
        check = compile_object(inputs, "input", 2, additional=False)
        endpoints.append(Endpoint(path, method, MappingProxyType(inputs), tuple(outputs), check))
    return tuple(endpoints)


def parse_guard_rails(doc: dict[str, Any], filename: str, endpoints: tuple[Endpoint, ...],
                      label_kind: str = "numeric") -> GuardRails:
    """A regression's rails bound a number (``output: {field, min, max}``, optional ``max_change``); a
    classifier's name the answers it may give (``output: {field, values}``) and optionally the confidence it
    needs (``min_confidence: {field, min}``), below which the wrapper abstains."""
    rails = mapping(doc, "guard_rails", filename, "guard_rails")
    known_keys(rails, {"output", "max_change", "min_confidence", "kill_switch"}, filename, "guard_rails")
    output = mapping(rails, "output", filename, "guard_rails.output")
    known_keys(output, {"field", "min", "max", "values"}, filename, "guard_rails.output")
    output_field = output.get("field")
    require(all(output_field in e.outputs for e in endpoints), filename, "guard_rails.output.field",
            f"{output_field!r} is not an output of every endpoint")
    kill = mapping(rails, "kill_switch", filename, "guard_rails.kill_switch")
    known_keys(kill, {"env"}, filename, "guard_rails.kill_switch")
    env = kill.get("env")
    require(isinstance(env, str) and ENV_PATTERN.match(env) is not None, filename, "guard_rails.kill_switch.env",
            "an environment variable name in capitals, e.g. PRICE_SUGGESTION_DISABLED")
    if label_kind == "categorical":
        require("values" in output and not ({"min", "max"} & set(output)), filename, "guard_rails.output",
                "a classifier's output names its allowed answers: values (not min/max)")
        values = output["values"]
        require(isinstance(values, list) and values and all(isinstance(v, str) and v for v in values)
                and len(set(values)) == len(values), filename, "guard_rails.output.values",
                "a non-empty list of distinct category names")
        require("max_change" not in rails, filename, "guard_rails.max_change",
                "a maximum change applies to a number; a classifier limits itself with min_confidence")
        confidence_field, confidence = None, None
        if "min_confidence" in rails:
            spec = mapping(rails, "min_confidence", filename, "guard_rails.min_confidence")
            known_keys(spec, {"field", "min"}, filename, "guard_rails.min_confidence")
            confidence_field = spec.get("field")
            require(all(confidence_field in e.outputs for e in endpoints), filename,
                    "guard_rails.min_confidence.field", f"{confidence_field!r} is not an output of every endpoint")
            confidence = number(spec.get("min"), filename, "guard_rails.min_confidence.min", low=0.0, high=1.0)
        return GuardRails(output_field=output_field, output_values=tuple(values), kill_switch_env=env,
                          min_confidence_field=confidence_field, min_confidence=confidence)
    require("values" not in output and "min_confidence" not in rails, filename, "guard_rails.output",
            "a regression's output is bounded by min and max (values and min_confidence are for classifiers)")
    low = number(output.get("min"), filename, "guard_rails.output.min")
    high = number(output.get("max"), filename, "guard_rails.output.max")
    require(low < high, filename, "guard_rails.output", "min must be below max")
    relative, window = None, None
    if "max_change" in rails:
        change = mapping(rails, "max_change", filename, "guard_rails.max_change")
        known_keys(change, {"max_relative", "window"}, filename, "guard_rails.max_change")
        relative = number(change.get("max_relative"), filename, "guard_rails.max_change.max_relative", low=0.0)
        window = duration(change.get("window"), filename, "guard_rails.max_change.window")
    return GuardRails(output_field=output_field, output_min=low, output_max=high, max_change_relative=relative,
                      max_change_window_seconds=window, kill_switch_env=env)


def parse_expectation(field_name: str, rule: Any, filename: str, where: str) -> Expectation:
    require(isinstance(rule, dict) and rule, filename, where, "a mapping: min/max, equals, or value + tolerance")
    known_keys(rule, {"min", "max", "equals", "value", "tolerance"}, filename, where)
    if "equals" in rule:
        require(len(rule) == 1, filename, where, "equals stands alone")
        return Expectation(field_name, equals=rule["equals"])
    if "value" in rule or "tolerance" in rule:
        require(set(rule) == {"value", "tolerance"}, filename, where, "value and tolerance go together, alone")
        return Expectation(field_name, value=number(rule["value"], filename, f"{where}.value"),
                           tolerance=number(rule["tolerance"], filename, f"{where}.tolerance", low=0, high=10))
    low = number(rule["min"], filename, f"{where}.min") if "min" in rule else None
    high = number(rule["max"], filename, f"{where}.max") if "max" in rule else None
    require(low is None or high is None or low <= high, filename, where, "min is above max")
    return Expectation(field_name, min=low, max=high)


def parse_golden_requests(doc: dict[str, Any], filename: str,
                          endpoints: tuple[Endpoint, ...]) -> tuple[GoldenRequest, ...]:
    raw = doc.get("golden_requests")
    require(isinstance(raw, list) and raw, filename, "golden_requests",
            "a non-empty list: the validator needs known requests to check a new model against")
    by_path = {e.path: e for e in endpoints}
    out: list[GoldenRequest] = []
    for i, spec in enumerate(raw):
        where = f"golden_requests[{i}]"
        require(isinstance(spec, dict), filename, where, "a mapping: name, endpoint, input, expect")
        known_keys(spec, {"name", "endpoint", "input", "expect"}, filename, where)
        name = spec.get("name")
        require(isinstance(name, str) and COLUMN_PATTERN.match(name) is not None, filename, f"{where}.name",
                "a snake_case name")
        require(name not in {g.name for g in out}, filename, f"{where}.name", f"{name!r} is used twice")
        path = spec.get("endpoint", endpoints[0].path)
        require(path in by_path, filename, f"{where}.endpoint", f"{path!r} is not a declared endpoint")
        endpoint = by_path[path]
        request = mapping(spec, "input", filename, f"{where}.input")
        try:
            endpoint.validate(request)
        except InvalidModelInput as error:
            field_where = f"{where}.input.{error.field}" if error.field else f"{where}.input"
            raise DefinitionError(filename, field_where, f"the endpoint refuses it: [{error.reason}] "
                                                         f"{error.message}") from None
        expect = mapping(spec, "expect", filename, f"{where}.expect")
        require(bool(expect), filename, f"{where}.expect", "say what the answer must hold")
        expectations = []
        for field_name, rule in expect.items():
            require(field_name in endpoint.outputs, filename, f"{where}.expect.{field_name}",
                    f"{field_name!r} is not an output of {path}")
            expectations.append(parse_expectation(field_name, rule, filename, f"{where}.expect.{field_name}"))
        out.append(GoldenRequest(name, path, MappingProxyType(dict(request)), tuple(expectations)))
    return tuple(out)
