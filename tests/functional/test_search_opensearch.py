"""What only the OpenSearch backend has: aliases over versioned indices, reindex with an atomic swap, per-category
split, errors when the cluster is away. On osmem-server, and on a real cluster when LETGO_OPENSEARCH_URL is set."""
from __future__ import annotations

import os
import uuid
from dataclasses import replace
from typing import Iterator

import pytest

from handlers.search import BackendUnavailable, SearchRequest
from handlers.search.opensearch_backend import OpenSearchBackend, OpenSearchConfig
from letgo.services import free_port
from tests.search_kit import CORPUS, in_language

pytestmark = pytest.mark.functional

TARGETS = ["osmem"] + (["cluster"] if os.environ.get("LETGO_OPENSEARCH_URL") else [])


@pytest.fixture(scope="module", params=TARGETS)
def config(request: pytest.FixtureRequest) -> OpenSearchConfig:
    if request.param == "osmem":
        return OpenSearchConfig(request.getfixturevalue("osmem_endpoint"))
    return OpenSearchConfig.from_env()


@pytest.fixture(scope="module")
def osmem_endpoint() -> Iterator[str]:
    from letgo.services.osmem import OsmemServer

    with OsmemServer() as server:
        yield server.url


def make(config: OpenSearchConfig, **changes) -> OpenSearchBackend:
    return OpenSearchBackend(replace(config, namespace=f"t{uuid.uuid4().hex[:10]}_", **changes))


@pytest.fixture
def search(config: OpenSearchConfig) -> Iterator[OpenSearchBackend]:
    backend = make(config)
    backend.setup()
    yield backend
    backend.drop()
    backend.close()


def aliases(backend: OpenSearchBackend, alias: str) -> dict[str, dict]:
    found = backend.client.indices.get_alias(name=alias)
    return {index: body["aliases"][alias] for index, body in found.items()}


def test_setup_creates_language_aliases_over_version_one_and_is_idempotent(search: OpenSearchBackend) -> None:
    ns = search.config.namespace
    assert aliases(search, f"{ns}classified_ads_es") == {f"{ns}classified_ads_es_v1": {"is_write_index": True}}

    search.setup()
    search.setup()

    for language in ("es", "nl", "en", "tr", "pt"):
        assert list(aliases(search, f"{ns}classified_ads_{language}")) == [f"{ns}classified_ads_{language}_v1"]


def test_setup_attaches_a_missing_alias_to_the_newest_existing_version(config: OpenSearchConfig) -> None:
    backend = make(config)
    ns = backend.config.namespace
    try:
        backend.setup()
        backend.client.indices.create(index=f"{ns}classified_ads_pt_v3")
        backend.client.indices.delete(index=f"{ns}classified_ads_pt_v1")  # as if a deploy died half-way

        backend.setup()

        assert list(aliases(backend, f"{ns}classified_ads_pt")) == [f"{ns}classified_ads_pt_v3"]
    finally:
        backend.drop()
        backend.close()


def test_reindex_copies_into_a_new_version_and_swaps_the_alias(search: OpenSearchBackend) -> None:
    ns = search.config.namespace
    spanish = in_language(CORPUS, "es")[:25]
    search.index(spanish)
    search.refresh()

    new = search.reindex("es")

    assert new == f"{ns}classified_ads_es_v2"
    assert aliases(search, f"{ns}classified_ads_es") == {new: {"is_write_index": True}}
    assert not search.client.indices.exists(index=f"{ns}classified_ads_es_v1")
    assert search.search(SearchRequest("es")).total == 25
    search.index([replace(spanish[0], price=1.0)])  # writes follow the alias
    search.refresh()
    assert search.search(SearchRequest("es", price_max=1.0)).total == 1


def test_reindex_can_refill_from_a_source_of_truth(search: OpenSearchBackend) -> None:
    search.index(in_language(CORPUS, "nl")[:10])
    search.refresh()

    search.reindex("nl", in_language(CORPUS, "nl")[10:14] + in_language(CORPUS, "es")[:3], delete_old=False)

    assert search.search(SearchRequest("nl")).total == 4
    assert search.client.indices.exists(index=f"{search.config.namespace}classified_ads_nl_v1")


def test_split_category_has_its_own_index_but_reads_through_the_language_alias(config: OpenSearchConfig) -> None:
    backend = make(config, split_categories=("bikes",))
    ns = backend.config.namespace
    try:
        backend.setup()
        spanish = in_language(CORPUS, "es")[:40]
        bikes = [ad for ad in spanish if ad.category == "bikes"]
        backend.index(spanish)
        backend.refresh()

        assert aliases(backend, f"{ns}bikes_es") == {f"{ns}bikes_es_v1": {"is_write_index": True}}
        assert backend.client.count(index=f"{ns}bikes_es")["count"] == len(bikes) > 0
        assert backend.search(SearchRequest("es")).total == 40
        assert backend.search(SearchRequest("es", categories=("bikes",))).total == len(bikes)

        backend.index([replace(bikes[0], category="sports_leisure")])  # leaves the bikes index
        backend.refresh()
        assert backend.client.count(index=f"{ns}bikes_es")["count"] == len(bikes) - 1
        assert backend.search(SearchRequest("es")).total == 40
    finally:
        backend.drop()
        backend.close()


def test_unreachable_cluster_is_backend_unavailable() -> None:
    backend = OpenSearchBackend(OpenSearchConfig(f"http://127.0.0.1:{free_port()}", timeout_s=2))

    with pytest.raises(BackendUnavailable) as unavailable:
        backend.search(SearchRequest("es"))

    assert unavailable.value.status_code == 503
