"""The OpenSearch backend's configuration, templates and request bodies, without a cluster."""
from __future__ import annotations

import pytest

from handlers.core.config import ConfigError
from handlers.search.model import CATEGORIES, Ad, SearchRequest, Sort
from handlers.search.opensearch_backend import OpenSearchBackend
from handlers.search.opensearch_config import IndexNames, OpenSearchConfig
from handlers.search.opensearch_schema import from_document, index_template, to_document

pytestmark = pytest.mark.unit

MADRID = (40.4168, -3.7038)


def backend(**config) -> OpenSearchBackend:
    return OpenSearchBackend(OpenSearchConfig("http://127.0.0.1:9", **config))


@pytest.mark.parametrize("env, region", [
    ({"LETGO_OPENSEARCH_URL": "http://127.0.0.1:9200"}, None),
    ({"LETGO_OPENSEARCH_URL": "http://127.0.0.1:9200", "AWS_REGION": "eu-west-1"}, None),
    ({"LETGO_OPENSEARCH_URL": "https://vpc-letgo-abc.eu-west-1.es.amazonaws.com", "AWS_REGION": "eu-west-1"},
     "eu-west-1"),
    ({"LETGO_OPENSEARCH_URL": "https://search.internal", "LETGO_OPENSEARCH_AWS_REGION": "eu-central-1"},
     "eu-central-1"),
], ids=["local", "local-ignores-aws-region", "aws-domain-signs", "explicit-region-signs"])
def test_config_from_env_signs_only_aws_endpoints_or_when_asked(env: dict, region: str | None) -> None:
    assert OpenSearchConfig.from_env(env).aws_region == region


@pytest.mark.parametrize("config, message", [
    (dict(url="localhost:9200"), "expected http"), (dict(url="http://x", namespace="Bad Name"), "namespace"),
    (dict(url="http://x", split_categories=("boats",)), "not categories"), (dict(url="http://x", shards=0), "shards"),
])
def test_config_invalid_fails_fast(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpenSearchConfig(**config)
    with pytest.raises(ConfigError, match="LETGO_OPENSEARCH_URL"):
        OpenSearchConfig.from_env({})


def test_sigv4_client_signs_with_the_configured_region(monkeypatch: pytest.MonkeyPatch) -> None:
    from requests_aws4auth import AWS4Auth

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(name, value)
    signed = OpenSearchBackend(OpenSearchConfig("https://search.example:443", aws_region="eu-west-1")).client

    auth = signed.transport.get_connection().session.auth
    assert isinstance(auth, AWS4Auth)
    assert (auth.region, auth.service) == ("eu-west-1", "es")


@pytest.mark.parametrize("language, stemmer, stop", [("es", "Spanish", "_spanish_"), ("nl", "Dutch", "_dutch_"),
                                                     ("en", "English", "_english_"), ("tr", "Turkish", "_turkish_"),
                                                     ("pt", "Portuguese", "_portuguese_")])
def test_index_template_per_language(language: str, stemmer: str, stop: str) -> None:
    template = index_template(language, OpenSearchConfig("http://x", namespace="t_"))

    analysis = template["template"]["settings"]["analysis"]
    assert analysis["filter"]["letgo_stemmer"] == {"type": "snowball", "language": stemmer}
    assert analysis["filter"]["letgo_stop"]["stopwords"] == stop
    assert analysis["analyzer"]["letgo_text"]["filter"][-3:] == ["letgo_stop", "letgo_stemmer", "asciifolding"]
    assert f"t_classified_ads_{language}_v*" in template["index_patterns"]
    assert {f"t_{c}_{language}_v*" for c in CATEGORIES} <= set(template["index_patterns"])
    mapping = template["template"]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"]["location"] == {"type": "geo_point"}
    assert mapping["properties"]["title"]["fields"]["suggest"]["type"] == "search_as_you_type"


def test_index_names_are_aliases_over_versions() -> None:
    names = IndexNames()
    assert names.read_alias("es") == "classified_ads_es"
    assert names.category_alias("bikes", "es") == "bikes_es"
    assert IndexNames.version_of("classified_ads_es_v12", "classified_ads_es") == 12
    assert IndexNames.version_of("classified_ads_es_v1_old", "classified_ads_es") is None


def test_documents_round_trip() -> None:
    ad = Ad("it-1", "Sofá IKEA", "furniture", 120.0, "EUR", 40.4, -3.7, "ES", "es", 1795700000.5)

    document = to_document(ad)

    assert document["location"] == {"lat": 40.4, "lon": -3.7} and document["listed_at"] == 1795700000500
    assert from_document(document) == ad


def test_search_body_relevance_decays_by_freshness_and_distance() -> None:
    request = SearchRequest("es", text="bici", lat=MADRID[0], lon=MADRID[1], radius_km=10, categories=("bikes",),
                            price_min=50)

    body = backend().search_body(request, None, 1795700000.0)

    score = body["query"]["function_score"]
    assert [next(iter(f["gauss"])) for f in score["functions"]] == ["listed_at", "location"]
    assert score["functions"][0]["gauss"]["listed_at"]["origin"] == "1795700000000"  # in the field's format
    filters = score["query"]["bool"]["filter"]
    assert {"terms": {"category": ["bikes"]}} in filters
    assert {"range": {"price": {"gte": 50}}} in filters
    assert filters[-1]["geo_distance"]["distance"] == "10.0km"
    assert body["sort"] == [{"_score": "desc"}, {"item_id": "asc"}]
    assert [r.get("to") for r in body["aggs"]["rings"]["geo_distance"]["ranges"]] == [1, 5, 10, 25, 50, None]
    assert body["suggest"]["spelling"]["term"]["field"] == "title.plain"
    assert body["aggs"]["known"]["global"] == {}  # is each word in any title at all (the fallback's question)
    assert body["size"] == request.page_size + 1 and body["track_total_hits"] is True


def test_search_body_without_text_or_point_is_newest_first_unscored() -> None:
    body = backend().search_body(SearchRequest("nl"), None, 0.0)

    assert "function_score" not in body["query"]
    assert body["sort"] == [{"listed_at": "desc"}, {"item_id": "asc"}]
    assert "rings" not in body["aggs"] and "suggest" not in body


def test_search_body_exact_pass_never_fuzzes_and_fuzzy_off_asks_no_spellings() -> None:
    fuzzy = backend().search_body(SearchRequest("es", text="iphone", sort=Sort.PRICE_ASC), None, 0.0)
    exact = backend().search_body(SearchRequest("es", text="iphone", sort=Sort.PRICE_ASC, fuzzy=False), None, 0.0)

    assert "fuzziness" not in str(fuzzy["query"]) and "title.plain" not in str(fuzzy["query"])
    assert "suggest" in fuzzy and "suggest" not in exact and "known" not in exact["aggs"]
    assert fuzzy["sort"][0] == {"price": "asc"}


def test_search_body_fallback_ranks_by_tier_first_in_every_sort() -> None:
    from handlers.search import opensearch_queries as queries
    from handlers.search.backend import Ranking

    fallback = ([("bicileta", "bicileta")], {"bicileta": ["bicicleta"]})
    by_price = queries.search_body(SearchRequest("es", text="bicileta", sort=Sort.PRICE_ASC), None, 0.0, Ranking(),
                                   fallback)
    by_relevance = queries.search_body(SearchRequest("es", text="bicileta"), None, 0.0, Ranking(), fallback)

    assert by_price["sort"][:2] == [{"_score": "desc"}, {"price": "asc"}]
    tiers = by_price["query"]["bool"]["must"][0]["dis_max"]["queries"]
    assert [q["constant_score"]["boost"] for q in tiers] == [2.0, 1.0]
    assert {"terms": {"title.plain": ["bicicleta"]}} in tiers[1]["constant_score"]["filter"]["bool"]["must"][0][
        "bool"]["should"]
    assert by_relevance["query"]["function_score"]["boost_mode"] == "sum"  # tier + decays
    assert "suggest" not in by_price
