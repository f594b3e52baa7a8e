"""The one search factory: the engine the environment names, or a ConfigError naming the variable to fix.

The indexer, the search API and the CLI all open their engine with ``open_backend``; nothing is guessed
(no variable means no engine, not an in-memory one) and nothing reaches the network here.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from handlers.core.config import ConfigError, Env
from handlers.search import open_backend
from handlers.search.opensearch_backend import OpenSearchBackend
from handlers.search.tantivy_backend import TantivyBackend

pytestmark = pytest.mark.unit

OPENSEARCH = {"LETGO_SEARCH_BACKEND": "opensearch", "LETGO_OPENSEARCH_URL": "http://127.0.0.1:9200"}


def test_open_backend_follows_the_environment(tmp_path: Path) -> None:
    opensearch = open_backend({**OPENSEARCH, "LETGO_OPENSEARCH_NAMESPACE": "t1_",
                               "LETGO_OPENSEARCH_SPLIT_CATEGORIES": "bikes, cars", "LETGO_OPENSEARCH_SHARDS": "2",
                               "LETGO_OPENSEARCH_REPLICAS": "1"})
    tantivy = open_backend(Env({"LETGO_SEARCH_BACKEND": " Tantivy ", "LETGO_SEARCH_PATH": str(tmp_path / "index")}))

    assert isinstance(opensearch, OpenSearchBackend) and isinstance(tantivy, TantivyBackend)
    config = opensearch.config
    assert (config.url, config.namespace, config.split_categories, config.shards, config.replicas,
            config.aws_region) == ("http://127.0.0.1:9200", "t1_", ("bikes", "cars"), 2, 1, None)
    assert tantivy.path == tmp_path / "index" and not tantivy.path.exists()  # made by setup(), not here


def test_open_backend_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in OPENSEARCH.items():
        monkeypatch.setenv(name, value)

    assert isinstance(open_backend(), OpenSearchBackend)


@pytest.mark.parametrize("env, variable", [
    ({}, "LETGO_SEARCH_BACKEND"),
    ({"LETGO_OPENSEARCH_URL": "http://127.0.0.1:9200"}, "LETGO_SEARCH_BACKEND"),  # no guessing from the URL
    ({"LETGO_SEARCH_BACKEND": "solr"}, "LETGO_SEARCH_BACKEND"),
    ({"LETGO_SEARCH_BACKEND": "tantivy"}, "LETGO_SEARCH_PATH"),  # no silent in-memory index
    ({"LETGO_SEARCH_BACKEND": "tantivy", "LETGO_SEARCH_PATH": "  "}, "LETGO_SEARCH_PATH"),
    ({"LETGO_SEARCH_BACKEND": "opensearch"}, "LETGO_OPENSEARCH_URL"),
    ({**OPENSEARCH, "LETGO_OPENSEARCH_URL": "vpc-search.eu-west-1.es.amazonaws.com"}, "LETGO_OPENSEARCH_URL"),
    ({**OPENSEARCH, "LETGO_OPENSEARCH_NAMESPACE": "Bad Name"}, "LETGO_OPENSEARCH_NAMESPACE"),
    ({**OPENSEARCH, "LETGO_OPENSEARCH_SPLIT_CATEGORIES": "bikes,boats"}, "LETGO_OPENSEARCH_SPLIT_CATEGORIES"),
    ({**OPENSEARCH, "LETGO_OPENSEARCH_SHARDS": "0"}, "LETGO_OPENSEARCH_SHARDS"),
    ({**OPENSEARCH, "LETGO_OPENSEARCH_SHARDS": "two"}, "LETGO_OPENSEARCH_SHARDS"),
    ({**OPENSEARCH, "LETGO_OPENSEARCH_REPLICAS": "-1"}, "LETGO_OPENSEARCH_REPLICAS"),
], ids=lambda value: "" if isinstance(value, dict) else value)
def test_open_backend_refuses_a_misconfiguration_naming_the_variable(env: dict, variable: str) -> None:
    with pytest.raises(ConfigError) as refused:
        open_backend(env)

    assert refused.value.where == variable
    assert str(refused.value).startswith(f"{variable}: ")


def test_open_backend_refuses_a_search_path_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "index"
    file.write_text("not an index")

    with pytest.raises(ConfigError, match="LETGO_SEARCH_PATH: .* is not a directory"):
        open_backend({"LETGO_SEARCH_BACKEND": "tantivy", "LETGO_SEARCH_PATH": str(file)})
