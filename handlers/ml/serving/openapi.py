"""The serving API's OpenAPI document, generated from the model definitions it serves (``GET /openapi.json``).

Each model's endpoints are declared in its YAML with typed, bounded inputs; writing an OpenAPI file by hand
would be a second copy that drifts. So the document is built here from the same :class:`Endpoint` values the
routes validate with: a JSON request body with exactly the declared inputs (types, enums, lengths, patterns,
ranges, required ones, nothing else), every status a route answers with its one error shape, and the answer's
shape. The fuzzing tests (schemathesis) read this document and hold the app to it: no 5xx, only documented
statuses and content types, bodies that match. The validator's internal route is not part of the public
contract and is not documented here (it answers 401 to anyone without the validation key).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from handlers.ml.definition_types import Endpoint, ModelDefinition

ERROR_STATUSES = {"400": "The body is not JSON, not an object, or an input is missing, of the wrong type or out of "
                         "bounds (error.field names it)",
                  "403": "X-Model-Version was sent: versions are not chosen by callers",
                  "413": "The body is larger than the limit",
                  "415": "The body is not declared JSON (Content-Type: application/json)",
                  "503": "The model is switched off (model_disabled), has no live version yet (model_unavailable) "
                         "or this process lost track of it (model_stale)"}


def input_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    kind = spec.get("type")
    if kind == "enum":
        return {"type": "string", "enum": list(spec.get("values", ()))}
    if kind == "string":
        out: dict[str, Any] = {"type": "string"}
        if spec.get("min_length"):
            out["minLength"] = spec["min_length"]
        if spec.get("max_length") is not None:
            out["maxLength"] = spec["max_length"]
        if spec.get("pattern"):
            out["pattern"] = spec["pattern"]
        return out
    if kind in ("integer", "number"):
        out = {"type": kind}
        for ours, theirs in (("minimum", "minimum"), ("maximum", "maximum")):
            if spec.get(ours) is not None:
                out[theirs] = spec[ours]
        return out
    return {"type": kind} if kind == "boolean" else {}


def _operation(definition: ModelDefinition, endpoint: Endpoint) -> dict[str, Any]:
    required = [name for name, spec in endpoint.inputs.items() if spec.get("required")]
    body = {"type": "object", "additionalProperties": False,
            "properties": {name: input_schema(spec) for name, spec in endpoint.inputs.items()}}
    if required:
        body["required"] = required
    answer = {"type": "object", "required": ["model", "version", "variant", "prediction", "clamped",
                                             "change_limited", "abstained"],
              "properties": {"model": {"type": "string", "enum": [definition.name]}, "version": {"type": "string"},
                             "variant": {"type": "string", "enum": ["stable", "canary"]},
                             "prediction": {"type": "object", "required": list(endpoint.outputs),
                                            "properties": {name: {} for name in endpoint.outputs}},
                             "clamped": {"type": "boolean"}, "change_limited": {"type": "boolean"},
                             "abstained": {"type": "boolean"}, "guard_rail": {"type": "object"}}}
    responses: dict[str, Any] = {"200": {"description": "The live model's answer, within its guard rails",
                                         "content": {"application/json": {"schema": answer}}}}
    for status, description in ERROR_STATUSES.items():
        responses[status] = {"description": description,
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation: dict[str, Any] = {
        "tags": [definition.name], "operationId": definition.name + endpoint.path.replace("/", "_").replace("-", "_"),
        "summary": definition.description.split(". ")[0], "description": definition.description,
        "parameters": [{"name": "X-User-Id", "in": "header", "required": False,
                        "description": "The caller's user id: keeps canary assignment sticky",
                        "schema": {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9_.:-]*$"}}],
        "responses": responses,
    }
    if endpoint.method == "GET":
        operation["parameters"] += [{"name": name, "in": "query", "required": bool(spec.get("required")),
                                     "schema": input_schema(spec)} for name, spec in endpoint.inputs.items()]
    else:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def document(definitions: Iterable[ModelDefinition]) -> dict[str, Any]:
    json_object = {"application/json": {"schema": {"type": "object"}}}
    paths: dict[str, Any] = {
        "/health": {"get": {"tags": ["operations"], "operationId": "health", "summary": "Every model's state",
                            "responses": {"200": {"description": "Every live model is loaded", "content": json_object},
                                          "503": {"description": "A live model is not loaded in this process",
                                                  "content": json_object}}}},
        "/metrics": {"get": {"tags": ["operations"], "operationId": "metrics", "summary": "Counters per model",
                             "responses": {"200": {"description": "Counters", "content": json_object}}}},
    }
    definitions = sorted(definitions, key=lambda d: d.name)
    for definition in definitions:
        for endpoint in definition.endpoints:
            paths[endpoint.path] = {endpoint.method.lower(): _operation(definition, endpoint)}
    error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["status", "code", "message"],
        "properties": {"status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                       "field": {"type": "string"}, "details": {"type": "object"}}}}}
    return {"openapi": "3.0.3",
            "info": {"title": "Letgo model serving API", "version": "1.0",
                     "description": "The models of the Letgo data platform (" +
                                    ", ".join(d.name for d in definitions) + "), each answered by its live, "
                                    "validated version within its guard rails. Every error answers "
                                    '{"error": {status, code, message, field?, details?}}.'},
            "paths": paths, "components": {"schemas": {"Error": error}}}
