"""Model definitions declared in YAML (``models/<name>.yaml``): loading one, and validating it whole.

A data scientist adds a model with one YAML file and one Python module: the file says what the model learns
from (an event type, the columns read from it, the label, a cap on rows and the column to stratify on), what
the data must look like before training may start (schema, null rates, ranges, drift against the current
model), how a candidate is judged (metrics, absolute thresholds, "not more than x worse than the current
model"), what the published model is allowed to do (guard rails, a kill switch), how it is served (endpoints
with typed, bounded inputs) and which known requests must keep working (golden requests, replayed offline
before publishing and against the live API by the validator).

Everything that can be wrong with a definition is found when it is loaded — by the training job, the serving
wrapper and the validator alike — and raises :class:`~handlers.schema.errors.DefinitionError` naming the
file, the field and the reason, like a broken event type. With the event-type catalog at hand, every column
path is also checked against the event type (declared, not personal data, a kind the column can hold); golden
request inputs are run through their endpoint's own input checks; entry points are imported.

This module is the entry (:func:`load_definition`, :func:`load_definitions`, :func:`parse_definition`), the
top level, the evaluation and the artefact's trusted types. The rest, one job per module:

* :mod:`handlers.ml.definition_types` — what a validated definition is (frozen dataclasses); what most code
  imports;
* :mod:`handlers.ml.definition_data` — the ``data`` and ``checks`` sections;
* :mod:`handlers.ml.definition_serving` — the ``serving``, ``guard_rails`` and ``golden_requests`` sections;
* :mod:`handlers.ml.definition_fields` — the field readers every section is written with.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from handlers.ml.definition_data import parse_checks, parse_data
from handlers.ml.definition_fields import entry_point, mapping, number, text
from handlers.ml.definition_serving import parse_endpoints, parse_golden_requests, parse_guard_rails
from handlers.ml.definition_types import EvaluationSpec, MetricThreshold, ModelDefinition, RelativeThreshold
from handlers.ml.metrics import CLASSIFICATION, METRICS, REGRESSION
from handlers.schema.errors import DefinitionError
from handlers.schema.rules import known_keys, parse_yaml, read_bytes, require, required_keys

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
TYPE_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
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


def _evaluation(doc: dict[str, Any], filename: str, task: str = REGRESSION) -> EvaluationSpec:
    evaluation = mapping(doc, "evaluation", filename, "evaluation")
    known_keys(evaluation, {"metrics", "thresholds", "relative_to_current", "relative_confidence"}, filename,
               "evaluation")
    metrics = evaluation.get("metrics")
    require(isinstance(metrics, list) and metrics, filename, "evaluation.metrics", "a non-empty list of metrics")
    for i, metric in enumerate(metrics):
        known = [name for name, m in METRICS.items() if m.task == task]
        require(metric in known, filename, f"evaluation.metrics[{i}]",
                f"unknown {task} metric {metric!r} (as the label's kind says); known: {', '.join(known)}")
    thresholds = []
    for metric, rule in mapping(evaluation, "thresholds", filename, "evaluation.thresholds", required=False).items():
        where = f"evaluation.thresholds.{metric}"
        require(metric in metrics, filename, where, f"{metric!r} is not in evaluation.metrics")
        require(isinstance(rule, dict) and rule and set(rule) <= {"min", "max"}, filename, where,
                "a mapping with min, max or both")
        thresholds.append(MetricThreshold(metric, *(number(rule[k], filename, f"{where}.{k}") if k in rule else None
                                                    for k in ("min", "max"))))
    relative = []
    for metric, rule in mapping(evaluation, "relative_to_current", filename, "evaluation.relative_to_current",
                                required=False).items():
        where = f"evaluation.relative_to_current.{metric}"
        require(metric in metrics, filename, where, f"{metric!r} is not in evaluation.metrics")
        require(isinstance(rule, dict) and set(rule) == {"max_worse"}, filename, where,
                "a mapping with max_worse (0.02 = at most 2 % worse than the current model)")
        relative.append(RelativeThreshold(metric, number(rule["max_worse"], filename, f"{where}.max_worse", low=0,
                                                         high=10)))
    require(bool(thresholds), filename, "evaluation.thresholds",
            "at least one absolute threshold: a model that is judged on nothing is never refused")
    confidence = None
    if evaluation.get("relative_confidence") is not None:
        confidence = number(evaluation["relative_confidence"], filename, "evaluation.relative_confidence", low=0.5,
                            high=0.999)
    return EvaluationSpec(tuple(metrics), tuple(thresholds), tuple(relative), confidence)


def _trusted_types(doc: dict[str, Any], filename: str) -> tuple[str, ...]:
    artifact = mapping(doc, "artifact", filename, "artifact", required=False)
    known_keys(artifact, {"trusted_types"}, filename, "artifact")
    extra = artifact.get("trusted_types", [])
    require(isinstance(extra, list), filename, "artifact.trusted_types", "a list of module.Class names")
    for i, name in enumerate(extra):
        require(isinstance(name, str) and TYPE_PATTERN.match(name) is not None, filename,
                f"artifact.trusted_types[{i}]", f"{name!r} is not a dotted module.Class name")
        require(name not in ("builtins.eval", "builtins.exec", "builtins.getattr", "builtins.__import__")
                and not name.startswith(("os.", "subprocess.", "posix.", "nt.", "shutil.", "pickle.", "marshal.")),
                filename, f"artifact.trusted_types[{i}]", f"{name} can run code: it is never trusted")
    return tuple(dict.fromkeys([*BASE_TRUSTED_TYPES, *extra]))


def parse_definition(doc: Any, filename: str, *, catalog: Any = None, resolve: bool = True,
                     sha256: str | None = None) -> ModelDefinition:
    """Validate a parsed YAML document; ``filename`` is what errors name.

    ``catalog`` (:class:`handlers.schema.event_types.Catalog`) adds the checks of column paths against the
    event type; ``resolve`` imports the entry points (tools that only read the file can skip it). ``sha256``
    identifies the definition in every model's metadata: the file's hash when loaded from a file, else the
    hash of the document's canonical JSON.
    """
    if sha256 is None:
        sha256 = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    require(isinstance(doc, dict), filename, None, "must be a mapping: name, description, owner, data, ...")
    known_keys(doc, TOP_LEVEL_KEYS, filename, None)
    required_keys(doc, REQUIRED_TOP_LEVEL, filename)
    name = doc.get("name")
    require(isinstance(name, str) and NAME_PATTERN.match(name) is not None, filename, "name",
            "snake_case ASCII such as price_suggestion")
    stem = Path(filename).stem
    require(stem == name, filename, "name", f"must match the file name ({stem})")
    data = parse_data(doc, filename, catalog)
    checks = parse_checks(doc, filename, data)
    training = mapping(doc, "training", filename, "training")
    known_keys(training, {"entry_point", "predict_batch"}, filename, "training")
    serving = mapping(doc, "serving", filename, "serving")
    known_keys(serving, {"predict", "endpoints"}, filename, "serving")
    endpoints = parse_endpoints(serving, filename, data)
    task = CLASSIFICATION if data.label.kind == "categorical" else REGRESSION
    return ModelDefinition(
        name=name, description=text(doc, "description", filename, "description"),
        owner=text(doc, "owner", filename, "owner"), filename=filename, sha256=sha256, data=data, checks=checks,
        train=entry_point(training.get("entry_point"), filename, "training.entry_point", resolve=resolve),
        predict_batch=entry_point(training.get("predict_batch"), filename, "training.predict_batch",
                                  resolve=resolve),
        predict=entry_point(serving.get("predict"), filename, "serving.predict", resolve=resolve),
        evaluation=_evaluation(doc, filename, task), trusted_types=_trusted_types(doc, filename),
        endpoints=endpoints, guard_rails=parse_guard_rails(doc, filename, endpoints, data.label.kind),
        golden_requests=parse_golden_requests(doc, filename, endpoints),
    )


def load_definition(path: Path | str, *, catalog: Any = None, resolve: bool = True) -> ModelDefinition:
    """Load and validate ``models/<name>.yaml``; raise :class:`DefinitionError` naming the file and field."""
    path = Path(path)
    raw = read_bytes(path)
    return parse_definition(parse_yaml(raw, path.name), path.name, catalog=catalog, resolve=resolve,
                            sha256=hashlib.sha256(raw).hexdigest())


def load_definitions(directory: Path | str, *, catalog: Any = None, resolve: bool = True) -> dict[str, ModelDefinition]:
    """Every ``*.yaml`` under ``directory``; the first broken one raises (tools that must see every file whole)."""
    out = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        definition = load_definition(path, catalog=catalog, resolve=resolve)
        out[definition.name] = definition
    return out


def load_definitions_safely(directory: Path | str, *, catalog: Any = None, resolve: bool = True,
                            only: Any = None) -> tuple[dict[str, ModelDefinition], dict[str, DefinitionError]]:
    """Every ``*.yaml`` under ``directory`` that loads, and the error of each that does not (by file name).

    What the serving fleet and the validator use: one broken model definition disables that model (its caller
    reports it), never the others. ``only`` (names) restricts to some models (a deployment serving a subset).
    """
    loaded: dict[str, ModelDefinition] = {}
    broken: dict[str, DefinitionError] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        if only is not None and path.stem not in only:
            continue
        try:
            definition = load_definition(path, catalog=catalog, resolve=resolve)
        except DefinitionError as exc:
            broken[path.name] = exc
            continue
        loaded[definition.name] = definition
    return loaded, broken
