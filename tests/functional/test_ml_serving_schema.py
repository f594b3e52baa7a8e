"""Property-based tests of the model serving API from its own OpenAPI document (schemathesis).

The document is the one the app serves at ``/openapi.json``, generated from the shipped model definitions (the
price model and the category classifier). Schemathesis generates requests from it — valid ones and, in negative
mode, ones that break it (wrong types, missing or extra inputs, out-of-range values, other bodies) — and sends
them over real HTTP to the app on a free 127.0.0.1 port, serving real trained models from a moto model store.
Every answer must be no 5xx, a documented status with the documented content type, and a body that conforms
to the documented schema. Examples are bounded and derandomised so the run is short and reproducible.
"""
from __future__ import annotations

import tempfile
from typing import Any, Iterator

import numpy as np
import pytest
import schemathesis
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from handlers.ml import artifacts
from handlers.ml.models import category_suggestion
from handlers.ml.serving.app import create_app
from handlers.ml.serving.client import HttpClient
from handlers.ml.serving.config import ServingConfig
from handlers.ml.serving.openapi import document
from handlers.ml.store import ModelStore
from letgo.services import BackgroundServer
from tests.ml_kit import classifier, dataset_of, definition, listing_documents
from tests.ml_serving_kit import TickClock, publish_live, shared_aws, trained_artefact

pytestmark = pytest.mark.functional

MAX_EXAMPLES = 150  # per operation and generation mode; the whole module stays well under a minute
DEFINITIONS = {d.name: d for d in (definition(), classifier())}

# Hypothesis keeps caches in ./.hypothesis by default: keep them out of the work tree (removed at exit).
_HYPOTHESIS_HOME = tempfile.TemporaryDirectory(prefix="letgo-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME.name)

schema = schemathesis.openapi.from_dict(document(DEFINITIONS.values()))
schema.config.generation.update(modes=list(schemathesis.GenerationMode), max_examples=MAX_EXAMPLES,
                                database="none", deterministic=True)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="session")
def aws(request, tmp_path_factory):
    return shared_aws(request, tmp_path_factory)


@pytest.fixture(scope="module")
def server(aws) -> Iterator[BackgroundServer]:
    store = ModelStore(aws.bucket("serving-schema-models"), s3=aws.s3(), clock=TickClock())
    publish_live(store, trained_artefact("good"))
    spec = DEFINITIONS["category_suggestion"]
    data = dataset_of(listing_documents(1500, seed=31), spec.data)
    labels = np.asarray(data.column(spec.data.label.name), dtype=object)
    publish_live(store, artifacts.dumps(category_suggestion.train(data, labels, spec, seed=1)), spec.name)
    app = create_app(DEFINITIONS, store, config=ServingConfig(poll=False, environ={}))
    try:
        with BackgroundServer(app) as running:
            yield running
    finally:
        app.extensions["ml_serving"].stop()


def test_the_app_serves_the_document_the_tests_are_generated_from(server: BackgroundServer) -> None:
    served = HttpClient(server.url).request("GET", "/openapi.json")
    assert served.status == 200 and served.body == document(DEFINITIONS.values())
    health = HttpClient(server.url).request("GET", "/health").body
    assert {name: model["status"] for name, model in health["models"].items()} == {name: "ok" for name in DEFINITIONS}


@schema.parametrize()
def test_serving_api_answers_every_generated_request_as_documented(case: Any, server: BackgroundServer) -> None:
    case.call_and_validate(base_url=server.url, checks=CHECKS)
