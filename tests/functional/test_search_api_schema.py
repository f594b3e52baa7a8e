"""Property-based tests of the search API from its own OpenAPI document (schemathesis).

Schemathesis generates requests from ``handlers/search/openapi.yaml`` — valid ones and, in negative mode,
ones that break the schema — and sends them over real HTTP to the app on a free 127.0.0.1 port, over the
real embedded engine loaded with the seeded corpus. Every answer must be no 5xx, a documented status with
the documented content type, and a body that conforms to the documented schema. Examples are bounded and
derandomised so the run is short and reproducible.
"""
from __future__ import annotations

import tempfile
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from handlers.search.api import create_app, load_openapi
from letgo.services import BackgroundServer
from tests.search_api_kit import loaded_backend

pytestmark = pytest.mark.functional

MAX_EXAMPLES = 150  # per operation and generation mode; the whole module stays well under a minute

# Hypothesis keeps caches in ./.hypothesis by default: keep them out of the work tree (removed at exit).
_HYPOTHESIS_HOME = tempfile.TemporaryDirectory(prefix="letgo-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME.name)

schema = schemathesis.openapi.from_dict(load_openapi())
schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none", deterministic=True)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with loaded_backend() as backend, BackgroundServer(create_app(backend)) as running:
        yield running


@schema.parametrize()
def test_search_api_answers_every_generated_request_as_documented(case: Any, server: BackgroundServer) -> None:
    case.call_and_validate(base_url=server.url, checks=CHECKS)
