"""The search HTTP API over the real embedded engine (tantivy) loaded with the seeded corpus.

Expectations come from the corpus by brute force (``tests/search_kit.py``), from the engine's own bounds and
enums (``handlers.search.model``) or from the documented routing rules — never from the API under test. The
only fakes are backends that fail on purpose (raise, time out, report the engine unreachable): faults a
healthy embedded engine cannot be made to produce otherwise.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

import jsonschema
import pytest
from flask import Flask, Request
from werkzeug.datastructures import EnvironHeaders, MultiDict
from werkzeug.utils import cached_property

from handlers.core.config import ConfigError
from handlers.search.api import ApiConfig, create_app, load_openapi
from handlers.search.backend import SearchBackend
from handlers.search.errors import BackendUnavailable
from handlers.search.languages import SUPPORTED, Reason
from handlers.search.model import (CATEGORIES, DEFAULT_PAGE_SIZE, MAX_AUTOCOMPLETE, MAX_CURSOR_CHARS, MAX_PAGE_SIZE,
                                   MAX_PREFIX_CHARS, MAX_PRICE, MAX_QUERY_CHARS, MAX_RADIUS_KM, Cursor, SearchRequest,
                                   SearchResponse, Sort)
from handlers.search.tantivy_backend import TantivyBackend
from tests.search_api_kit import loaded_backend
from tests.search_kit import (AMSTERDAM, CORPUS, MADRID, distance_km, expected_facets, expected_matches, in_language,
                              text_word, title_word, title_word_prefix)

pytestmark = pytest.mark.functional

DOCUMENT = load_openapi()


@pytest.fixture(scope="module")
def backend() -> Iterator[TantivyBackend]:
    with loaded_backend() as loaded:
        yield loaded


@pytest.fixture(scope="module")
def client(backend: TantivyBackend) -> Any:
    return create_app(backend).test_client()


def get(client: Any, path: str, params: Any = None, headers: dict[str, str] | None = None) -> Any:
    response = client.get(path, query_string=params or {}, headers=headers or {})
    assert response.headers["Content-Type"].startswith("application/json"), response.data[:200]
    return response


def both_words(*words: str) -> Callable:
    checks = [title_word(w) for w in words]
    return lambda ad: all(check(ad) for check in checks)


def every_page(client: Any, params: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[list[dict], int]:
    """Follow next_cursor to the end; every page must agree on the total."""
    hits: list[dict] = []
    body = get(client, "/search", params, headers).json
    total = body["total"]
    for _ in range(500):
        hits.extend(body["hits"])
        assert body["total"] == total
        if body["next_cursor"] is None:
            return hits, total
        assert len(body["hits"]) == params["page_size"]
        response = get(client, "/search", {**params, "cursor": body["next_cursor"]}, headers)
        assert response.status_code == 200, response.json
        body = response.json
    raise AssertionError("the cursor never ended")


def facet_counts(body: dict) -> dict[str, Any]:
    facets = body["facets"]
    return {"categories": {b["key"]: b["count"] for b in facets["categories"]},
            "prices": [b["count"] for b in facets["price_ranges"]],
            "rings": [b["count"] for b in facets["distance_rings"]] or None}


# -- searching through HTTP -----------------------------------------------------------------------------------
MADRID_SIGNALS = {  # the buyer is in Madrid (lat/lon): only an explicit language outranks the place
    "explicit": ({"language": "es"}, {"Accept-Language": "nl-NL,nl"}),
    "point": ({"user_language": "en", "country": "GB"}, {"Accept-Language": "en-GB,en;q=0.9"}),
}


@pytest.mark.parametrize("reason", MADRID_SIGNALS)
def test_search_madrid_user_bicicleta_montana_gets_nearby_bikes_facets_and_spanish(client: Any, reason: str) -> None:
    signals, headers = MADRID_SIGNALS[reason]
    wanted = SearchRequest("es", text="bicicleta montaña", lat=MADRID[0], lon=MADRID[1], radius_km=150)
    expected = {ad.item_id: ad for ad in expected_matches(wanted, text=both_words("bicicleta", "montaña"))}
    assert expected

    response = get(client, "/search", {"q": "bicicleta montaña", "lat": MADRID[0], "lon": MADRID[1],
                                       "radius_km": 150, "page_size": MAX_PAGE_SIZE, **signals}, headers)

    body = response.json
    assert response.status_code == 200
    assert body["language"] == {"language": "es", "reason": reason, "requested": None, "source": reason,
                                "country": "ES"}
    assert {h["item_id"] for h in body["hits"]} == set(expected)
    assert body["total"] == len(expected) and body["next_cursor"] is None
    for hit in body["hits"]:
        ad = expected[hit["item_id"]]
        assert hit["title"] == ad.title and hit["category"] == ad.category == "bikes"
        assert hit["distance_km"] == pytest.approx(distance_km(*MADRID, ad.lat, ad.lon), abs=1e-6)
        assert hit["distance_km"] <= 150
    assert facet_counts(body) == expected_facets(list(expected.values()), MADRID)
    assert body["did_you_mean"] is None and body["took_ms"] >= 0


def test_search_amsterdam_user_gets_dutch_listings_near_amsterdam(client: Any) -> None:
    wanted = SearchRequest("nl", text="stadsfiets", lat=AMSTERDAM[0], lon=AMSTERDAM[1], radius_km=60)
    expected = {ad.item_id: ad for ad in expected_matches(wanted, text=title_word("stadsfiets"))}
    assert expected and all(ad.language == "nl" for ad in expected.values())

    response = get(client, "/search", {"q": "stadsfiets", "lat": AMSTERDAM[0], "lon": AMSTERDAM[1], "radius_km": 60,
                                       "country": "NL", "page_size": MAX_PAGE_SIZE},
                   {"Accept-Language": "nl-NL,nl;q=0.9,en-GB;q=0.7"})

    body = response.json
    assert response.status_code == 200
    assert body["language"]["language"] == "nl" and body["language"]["reason"] == "point"
    assert {h["item_id"] for h in body["hits"]} == set(expected)
    assert facet_counts(body) == expected_facets(list(expected.values()), AMSTERDAM)


def test_search_typo_gets_did_you_mean_and_the_fuzzy_matches_after_the_exact_ones(client: Any) -> None:
    exact = {ad.item_id for ad in expected_matches(SearchRequest("es"), text=text_word("bicileta"))}
    approximate = {ad.item_id for ad in expected_matches(SearchRequest("es"), text=title_word("bicicleta"))} - exact

    body = get(client, "/search", {"q": "bicileta", "language": "es", "page_size": MAX_PAGE_SIZE}).json

    assert body["did_you_mean"] == "bicicleta" and body["approximate"] == len(approximate)
    assert [h["item_id"] for h in body["hits"][:len(exact)]] == sorted(exact) or \
        {h["item_id"] for h in body["hits"][:len(exact)]} == exact
    assert {h["item_id"] for h in body["hits"] if h["approximate"]} == approximate
    assert get(client, "/search", {"q": "bicileta", "language": "es", "fuzzy": "false"}).json["total"] == len(exact)


def test_an_english_phone_in_madrid_finds_the_spanish_listings(client: Any) -> None:
    expected = {ad.item_id for ad in expected_matches(SearchRequest("es"), text=title_word("bicicleta"))}

    body = get(client, "/search", {"q": "bicicleta", "country": "ES", "page_size": MAX_PAGE_SIZE},
               {"Accept-Language": "en-GB,en;q=0.9"}).json

    assert body["language"] == {"language": "es", "reason": "country", "requested": None, "source": "country",
                                "country": "ES"}
    assert {h["item_id"] for h in body["hits"]} == expected and body["total"] == len(expected)


def test_nothing_in_the_chosen_language_says_which_language_of_that_place_has_matches(client: Any) -> None:
    english_in_spain = [ad for ad in in_language(CORPUS, "en") if ad.country == "ES" and title_word("bike")(ad)]
    assert english_in_spain and not expected_matches(SearchRequest("es"), text=title_word("bike"))

    body = get(client, "/search", {"q": "bike", "country": "ES"}).json

    assert body["total"] == 0 and body["language"]["language"] == "es"
    assert body["alternatives"] == [{"language": "en", "total": len(english_in_spain)}]  # not the GB bikes
    assert body["wider"] is None


def test_nothing_within_the_radius_offers_the_nearest_ring_with_matches(client: Any) -> None:
    bikes = expected_matches(SearchRequest("es"), text=title_word("bicicleta"))
    nearest = min(distance_km(*MADRID, ad.lat, ad.lon) for ad in bikes)
    radius = nearest / 2
    edge = next(e for e in (1, 5, 10, 25, 50) if e > radius and e >= nearest)
    within = sum(distance_km(*MADRID, ad.lat, ad.lon) < edge for ad in bikes)

    body = get(client, "/search", {"q": "bicicleta", "lat": MADRID[0], "lon": MADRID[1], "radius_km": radius}).json

    assert body["total"] == 0
    assert body["wider"] == {"radius_km": edge, "total": within}


@pytest.mark.parametrize("params, headers, config, expected", [
    ({"language": "nl", "user_language": "tr", "country": "PT"}, {"Accept-Language": "es"}, {},
     ("nl", "explicit", None, "explicit", "PT")),
    ({"user_language": "tr", "country": "PT", "lat": MADRID[0], "lon": MADRID[1]}, {}, {},
     ("es", "point", None, "point", "ES")),
    ({"user_language": "tr", "country": "PT"}, {"Accept-Language": "es"}, {}, ("pt", "country", None, "country", "PT")),
    ({"user_language": "tr"}, {"Accept-Language": "es"}, {"default_country": "NL"}, ("tr", "user", None, "user", None)),
    ({}, {"Accept-Language": "fr-FR, nl;q=0.8, es;q=0.9"}, {"default_country": "PT"},
     ("es", "accept_language", None, "accept_language", None)),
    ({"country": "pt"}, {}, {}, ("pt", "country", None, "country", "PT")),
    ({}, {}, {"default_country": "NL"}, ("nl", "country", None, "default_country", None)),
    ({"country": "TR"}, {}, {"default_country": "NL"}, ("tr", "country", None, "country", "TR")),
    ({}, {}, {}, ("en", "fallback", None, None, None)),
    ({"language": "fr", "country": "ES"}, {"Accept-Language": "nl"}, {}, ("es", "fallback", "fr", "explicit", "ES")),
    ({"country": "US"}, {"Accept-Language": "de-DE,fr;q=0.5"}, {}, ("en", "fallback", "de", "accept_language", None)),
], ids=["explicit-beats-all", "point-beats-country-and-user", "country-beats-user-and-header", "user-beats-header",
        "best-supported-q-value", "country", "default-country", "country-beats-default", "nothing",
        "unsupported-explicit", "unsupported-header"])
def test_search_language_routing_follows_the_documented_precedence(backend: TantivyBackend, params: dict,
                                                                   headers: dict, config: dict,
                                                                   expected: tuple) -> None:
    client = create_app(backend, ApiConfig(**config)).test_client()
    language = expected[0]

    for path, extra in (("/search", {"page_size": MAX_PAGE_SIZE}), ("/autocomplete", {"q": "a"})):
        body = get(client, path, {**params, **extra}, headers).json

        assert body["language"] == dict(zip(("language", "reason", "requested", "source", "country"), expected))
    hits = get(client, "/search", {**params, "page_size": 5}, headers).json["hits"]
    place = expected[4]  # without a radius, only the listings of the place's country
    wanted = {ad.item_id for ad in in_language(CORPUS, language) if place is None or ad.country == place}
    assert {h["item_id"] for h in hits} <= wanted and bool(hits) == bool(wanted)


def test_autocomplete_completes_titles_of_the_routed_language_nearest_first(client: Any) -> None:
    matches = title_word_prefix("bici")
    by_id = {ad.item_id: ad for ad in in_language(CORPUS, "es")}
    candidates = {ad.title for ad in by_id.values() if matches(ad.title)}

    body = get(client, "/autocomplete", {"q": "bici", "limit": 4, "lat": MADRID[0], "lon": MADRID[1]},
               {"Accept-Language": "es"}).json

    texts = [s["text"] for s in body["suggestions"]]
    assert len(texts) == min(4, len(candidates)) == len(set(texts)) and set(texts) <= candidates
    for s in body["suggestions"]:
        ad = by_id[s["item_id"]]
        assert s["text"] == ad.title
        assert s["distance_km"] == pytest.approx(distance_km(*MADRID, ad.lat, ad.lon), abs=1e-6)


# -- paging ---------------------------------------------------------------------------------------------------
PAGING = {
    "newest": ({"language": "es", "sort": "newest", "page_size": 7}, SearchRequest("es"), None),
    "text-near-madrid": ({"language": "es", "q": "bicicleta", "lat": MADRID[0], "lon": MADRID[1], "page_size": 3},
                         SearchRequest("es"), title_word("bicicleta")),
    "filtered-price": ({"country": "NL", "sort": "price_asc", "category": ["bikes", "phones"], "page_size": 4},
                       SearchRequest("nl", categories=("bikes", "phones")), None),
    "radius-distance": ({"language": "es", "lat": MADRID[0], "lon": MADRID[1], "radius_km": 300, "sort": "distance",
                         "page_size": 9}, SearchRequest("es", lat=MADRID[0], lon=MADRID[1], radius_km=300), None),
}


@pytest.mark.parametrize("name", PAGING)
def test_search_next_cursor_pages_return_every_match_exactly_once(client: Any, name: str) -> None:
    params, wanted, text = PAGING[name]
    expected = {ad.item_id for ad in expected_matches(wanted, text=text)}
    assert len(expected) > 2 * params["page_size"]  # at least three pages

    hits, total = every_page(client, params)

    ids = [h["item_id"] for h in hits]
    assert len(ids) == len(set(ids)) == total == len(expected)
    assert set(ids) == expected


# -- bad requests ---------------------------------------------------------------------------------------------
BAD = [
    ("/search", {"lat": "91", "lon": "0"}, "lat"),
    ("/search", {"lat": "north", "lon": "0"}, "lat"),
    ("/search", {"lat": "NaN", "lon": "0"}, "lat"),
    ("/search", {"lat": "40.4"}, "lon"),
    ("/search", {"lat": "0", "lon": "180.5"}, "lon"),
    ("/search", {"lat": "40.4", "lon": "-3.7", "radius_km": "0"}, "radius_km"),
    ("/search", {"lat": "40.4", "lon": "-3.7", "radius_km": str(MAX_RADIUS_KM + 1)}, "radius_km"),
    ("/search", {"radius_km": "10"}, "radius_km"),
    ("/search", {"page_size": "0"}, "page_size"),
    ("/search", {"page_size": str(MAX_PAGE_SIZE + 1)}, "page_size"),
    ("/search", {"page_size": "ten"}, "page_size"),
    ("/search", {"q": "bici " * (MAX_QUERY_CHARS // 5 + 1)}, "q"),
    ("/search", {"sort": "cheapest"}, "sort"),
    ("/search", {"sort": "distance"}, "sort"),
    ("/search", {"cursor": "not-a-cursor"}, "cursor"),
    ("/search", {"cursor": "x" * (MAX_CURSOR_CHARS + 1)}, "cursor"),
    ("/search", {"category": ["bikes", "spaceships"]}, "category"),
    ("/search", {"price_min": "-1"}, "price_min"),
    ("/search", {"price_min": "500", "price_max": "100"}, "price_min"),
    ("/search", {"price_max": str(MAX_PRICE * 10)}, "price_max"),
    ("/search", {"fuzzy": "maybe"}, "fuzzy"),
    ("/search", {"country": "Spain"}, "country"),
    ("/search", {"language": "x" * 40}, "language"),
    ("/search", {"user_language": "y" * 40}, "user_language"),
    ("/autocomplete", {}, "q"),
    ("/autocomplete", {"q": "   "}, "q"),
    ("/autocomplete", {"q": "b" * (MAX_PREFIX_CHARS + 1)}, "q"),
    ("/autocomplete", {"q": "bici", "limit": "0"}, "limit"),
    ("/autocomplete", {"q": "bici", "limit": str(MAX_AUTOCOMPLETE + 1)}, "limit"),
    ("/autocomplete", {"q": "bici", "limit": "lots"}, "limit"),
    ("/autocomplete", {"q": "bici", "lat": "100", "lon": "0"}, "lat"),
    ("/autocomplete", {"q": "bici", "lon": "0"}, "lat"),
    ("/autocomplete", {"q": "bici", "country": "ESP"}, "country"),
]


@pytest.mark.parametrize("path, params, field", BAD, ids=[f"{p[1:]}-{f}-{i}" for i, (p, _, f) in enumerate(BAD)])
def test_bad_parameter_answers_400_naming_the_field(client: Any, path: str, params: dict, field: str) -> None:
    response = get(client, path, params)

    error = response.json["error"]
    assert response.status_code == 400 == error["status"]
    assert error["code"] == "invalid_request"
    assert error["field"] == field and error["reason"]
    assert error["message"].startswith(f"{field}: ")


def test_cursor_of_another_query_answers_400_naming_the_cursor(client: Any) -> None:
    cursor = get(client, "/search", {"language": "es", "sort": "newest", "page_size": 3}).json["next_cursor"]
    assert cursor

    response = get(client, "/search", {"language": "es", "sort": "price_asc", "page_size": 3, "cursor": cursor})

    assert response.status_code == 400 and response.json["error"]["field"] == "cursor"


@pytest.mark.parametrize("after", [(1e308, 10**30), (1.0, -(10**30)), ("price", 1), (1.0,)],
                         ids=["key-above-int64", "key-below-int64", "text-value", "too-short"])
def test_forged_cursor_with_a_valid_fingerprint_answers_400_naming_the_cursor(client: Any, after: tuple) -> None:
    params = {"language": "es", "sort": "price_asc", "page_size": 3}
    forged = Cursor(after, 0.0).encode(SearchRequest.from_params(params, "es"), "tantivy")

    response = get(client, "/search", {**params, "cursor": forged})

    assert response.status_code == 400 and response.json["error"]["field"] == "cursor"


# -- one error shape for every error --------------------------------------------------------------------------
class ExplodingBackend(TantivyBackend):
    """A fault the embedded engine cannot be made to produce: a bug inside the engine call."""

    def search(self, request: SearchRequest) -> SearchResponse:
        raise RuntimeError("secret internal detail: /var/lib/index is corrupt")


class UnreachableBackend(TantivyBackend):
    """A fault an embedded engine cannot have: the search cluster does not answer."""

    def search(self, request: SearchRequest) -> SearchResponse:
        raise BackendUnavailable(self.name, "connection refused by 10.0.0.7:443")

    def autocomplete(self, *args: Any, **kwargs: Any) -> list:
        raise BackendUnavailable(self.name, "connection refused by 10.0.0.7:443")


class SlowBackend(TantivyBackend):
    """A fault the embedded engine cannot be made to produce on demand: an engine slower than the deadline."""

    def search(self, request: SearchRequest) -> SearchResponse:
        time.sleep(1.0)
        return super().search(request)


def _faulty(kind: type[SearchBackend], **config: Any) -> Flask:
    backend = kind()
    backend.setup()
    return create_app(backend, ApiConfig(**config))


ERROR_SCHEMA = {**DOCUMENT["components"]["schemas"]["Error"], "components": DOCUMENT["components"]}
ERRORS = {
    "400": (lambda backend: create_app(backend), "GET", "/search?lat=91&lon=0", 400, "invalid_request"),
    "404": (lambda backend: create_app(backend), "GET", "/no/such/route", 404, "not_found"),
    "405": (lambda backend: create_app(backend), "POST", "/search", 405, "method_not_allowed"),
    "500": (lambda backend: _faulty(ExplodingBackend), "GET", "/search?q=bici", 500, "internal_error"),
    "503": (lambda backend: _faulty(UnreachableBackend), "GET", "/autocomplete?q=bici", 503, "backend_unavailable"),
    "504": (lambda backend: _faulty(SlowBackend, max_request_seconds=0.2), "GET", "/search", 504, "search_timeout"),
    "page-off-404": (lambda backend: create_app(backend, ApiConfig(serve_page=False)), "GET", "/", 404, "not_found"),
}


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_answers_the_one_json_shape(backend: TantivyBackend, caplog: pytest.LogCaptureFixture,
                                                name: str) -> None:
    make, method, url, status, code = ERRORS[name]
    client = make(backend).test_client()

    with caplog.at_level(logging.ERROR, logger="letgo.search.api"):
        response = client.open(url, method=method)

    body = response.get_json()
    assert response.status_code == status and response.headers["Content-Type"] == "application/json"
    jsonschema.validate(body, ERROR_SCHEMA)
    assert set(body) == {"error"} and body["error"]["status"] == status and body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    assert "Traceback" not in response.text and "secret" not in response.text and "10.0.0.7" not in response.text
    if status >= 500:  # logged under the id the client was given, with the detail the client was not
        logged = [r.getMessage() for r in caplog.records]
        assert any(body["error"]["request_id"] in line for line in logged), logged
    if status == 405:
        assert "GET" in response.headers["Allow"]


def test_unexpected_error_logs_the_traceback_under_the_callers_request_id(caplog: pytest.LogCaptureFixture) -> None:
    client = _faulty(ExplodingBackend).test_client()

    with caplog.at_level(logging.ERROR, logger="letgo.search.api"):
        response = client.get("/search", headers={"X-Request-Id": "trace-42"})

    assert response.json["error"]["request_id"] == "trace-42" == response.headers["X-Request-Id"]
    record = next(r for r in caplog.records if "trace-42" in r.getMessage())
    assert record.exc_info and "secret internal detail" in str(record.exc_info[1])


def test_a_url_or_body_too_large_answers_the_one_json_shape(client: Any) -> None:
    long_url = client.get("/search", query_string={"q": "bici", "pad": "x" * 5000})
    big_body = client.get("/search", query_string={"q": "bici"}, data="x" * 20_000,
                          headers={"Content-Type": "text/plain"})

    assert long_url.status_code == 414 and long_url.json["error"]["code"] == "uri_too_long"
    assert big_body.status_code == 413 and big_body.json["error"]["code"] == "request_entity_too_large"
    for reply in (long_url, big_body):
        assert reply.json["error"]["request_id"] == reply.headers["X-Request-Id"]


def test_unusable_request_id_is_replaced_not_echoed(client: Any) -> None:
    response = client.get("/health", headers={"X-Request-Id": "<script>alert(1)</script>"})

    assert response.headers["X-Request-Id"] != "<script>alert(1)</script>"
    assert len(response.headers["X-Request-Id"]) == 32


# -- operations -----------------------------------------------------------------------------------------------
def test_health_names_the_backend_and_says_ok(client: Any, backend: TantivyBackend) -> None:
    response = get(client, "/health")

    assert response.status_code == 200
    assert response.json["backend"] == backend.name and response.json["ok"] is True


def test_health_answers_503_in_the_error_shape_when_the_engine_is_unreachable() -> None:
    response = _faulty(UnreachableBackend).test_client().get("/health")

    body = response.json
    assert response.status_code == 503
    assert body["backend"] == "tantivy" and body["ok"] is False
    jsonschema.validate(body, ERROR_SCHEMA)
    assert body["error"]["code"] == "backend_unavailable" and body["error"]["status"] == 503


def test_deadline_off_calls_the_engine_inline(backend: TantivyBackend) -> None:
    client = create_app(backend, ApiConfig(max_request_seconds=None)).test_client()

    assert get(client, "/search", {"language": "pt"}).json["total"] == len(in_language(CORPUS, "pt"))


def test_page_and_its_assets_are_served_with_a_self_only_policy(client: Any) -> None:
    page = client.get("/")
    script = client.get("/static/app.js")

    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'src="static/app.js"' in page.text and "http" not in page.text.replace("http-equiv", "")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert script.status_code == 200 and "fetch(" in script.text
    assert "'self'" in script.headers["Content-Security-Policy"]


def test_cors_is_off_by_default_and_on_for_configured_origins(backend: TantivyBackend) -> None:
    origin = {"Origin": "https://www.letgo.example"}
    default = create_app(backend).test_client().get("/health", headers=origin)
    allowed = create_app(backend, ApiConfig(cors_origins=("https://www.letgo.example",))).test_client()

    assert "Access-Control-Allow-Origin" not in default.headers
    assert allowed.get("/health", headers=origin).headers["Access-Control-Allow-Origin"] == origin["Origin"]
    other = allowed.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize("config, setting", [
    ({"default_country": "Spain"}, "default_country"),
    ({"max_request_seconds": 0}, "max_request_seconds"),
    ({"max_concurrent_searches": 0}, "max_concurrent_searches"),
    ({"cors_origins": ("www.letgo.example/path",)}, "cors_origins"),
])
def test_api_config_refuses_unworkable_settings_naming_them(config: dict, setting: str) -> None:
    with pytest.raises(ConfigError) as refused:
        ApiConfig(**config)

    assert refused.value.where == setting


# -- the OpenAPI document is the API ---------------------------------------------------------------------------
class RecordingArgs(MultiDict):
    """Query arguments that remember which names the app asked for."""

    def __init__(self, *args: Any, read: set[str]) -> None:
        super().__init__(*args)
        self.read = read

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:  # noqa: A002 - Werkzeug's signature
        self.read.add(key)
        return super().get(key, default, type)

    def getlist(self, key: str, type: Any = None) -> list:  # noqa: A002
        self.read.add(key)
        return super().getlist(key, type)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


class RecordingHeaders(EnvironHeaders):
    def __init__(self, environ: dict, read: set[str]) -> None:
        super().__init__(environ)
        self.read = read

    def __getitem__(self, key: Any) -> Any:
        self.read.add(str(key).lower())
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:  # noqa: A002 - Werkzeug's signature
        self.read.add(key.lower())
        return super().get(key, default, type)

    def getlist(self, key: str, type: Any = None) -> list:  # noqa: A002
        self.read.add(key.lower())
        return super().getlist(key, type)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key).lower())
        return super().__contains__(key)


READ: dict[str, set[str]] = {"args": set(), "headers": set()}


class RecordingRequest(Request):
    @cached_property
    def args(self) -> MultiDict:  # type: ignore[override]
        return RecordingArgs(super().args, read=READ["args"])

    def __init__(self, environ: dict, *args: Any, **kwargs: Any) -> None:
        super().__init__(environ, *args, **kwargs)
        self.headers = RecordingHeaders(environ, READ["headers"])  # Werkzeug sets headers in __init__


def _documented(operation: dict) -> tuple[set[str], set[str]]:
    parameters = []
    for parameter in operation.get("parameters", []):
        if "$ref" in parameter:
            parameter = DOCUMENT["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        parameters.append(parameter)
    return ({p["name"] for p in parameters if p["in"] == "query"},
            {p["name"].lower() for p in parameters if p["in"] == "header"})


def test_openapi_document_lists_exactly_the_apps_routes(backend: TantivyBackend) -> None:
    app = create_app(backend)
    routes = {(rule.rule.replace("<", "{").replace(">", "}"), method.lower())
              for rule in app.url_map.iter_rules() if rule.endpoint != "page.static"  # the page's own assets
              for method in rule.methods - {"HEAD", "OPTIONS"}}

    documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}

    assert documented == routes
    assert app.test_client().get("/openapi.json").json == DOCUMENT


@pytest.mark.parametrize("path, params", [
    ("/search", {"q": "bici", "lat": "40.4", "lon": "-3.7", "category": "bikes"}),
    ("/autocomplete", {"q": "bici", "lat": "40.4", "lon": "-3.7"}),
    ("/health", {}), ("/openapi.json", {}), ("/", {}),
])
def test_openapi_document_lists_exactly_the_parameters_each_route_reads(backend: TantivyBackend, path: str,
                                                                        params: dict) -> None:
    app = create_app(backend)
    app.request_class = RecordingRequest
    READ["args"].clear()
    READ["headers"].clear()

    response = app.test_client().get(path, query_string={k: v for k, v in params.items() if v is not None})

    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    query, headers = _documented(DOCUMENT["paths"][path]["get"])
    assert READ["args"] == query
    assert READ["headers"] - {"origin"} == headers  # Origin is CORS (ApiConfig.cors_origins), not an API input


def test_openapi_document_bounds_and_enums_are_the_engines() -> None:
    search = {p.get("name"): p for p in DOCUMENT["paths"]["/search"]["get"]["parameters"]}
    complete = {p.get("name"): p for p in DOCUMENT["paths"]["/autocomplete"]["get"]["parameters"]}
    schemas = DOCUMENT["components"]["schemas"]

    assert schemas["Category"]["enum"] == list(CATEGORIES)
    assert search["sort"]["schema"]["enum"] == [s.value for s in Sort]
    assert schemas["LanguageChoice"]["properties"]["language"]["enum"] == list(SUPPORTED)
    assert schemas["LanguageChoice"]["properties"]["reason"]["enum"] == [r.value for r in Reason]
    assert search["q"]["schema"]["maxLength"] == MAX_QUERY_CHARS
    assert search["radius_km"]["schema"]["maximum"] == MAX_RADIUS_KM
    assert search["page_size"]["schema"]["maximum"] == MAX_PAGE_SIZE
    assert search["page_size"]["schema"]["default"] == DEFAULT_PAGE_SIZE
    assert search["cursor"]["schema"]["maxLength"] == MAX_CURSOR_CHARS
    assert search["price_min"]["schema"]["maximum"] == search["price_max"]["schema"]["maximum"] == MAX_PRICE
    assert complete["q"]["schema"]["maxLength"] == MAX_PREFIX_CHARS
    assert complete["limit"]["schema"]["maximum"] == MAX_AUTOCOMPLETE
