"""The search contract: one suite, every backend, the same answers.

Runs against the embedded engine (tantivy), against the OpenSearch backend on osmem-server (an in-memory
OpenSearch-compatible server on a free 127.0.0.1 port), and against a real OpenSearch cluster when
``LETGO_OPENSEARCH_URL`` names one (SigV4 with ``LETGO_OPENSEARCH_AWS_REGION``; every run works in its
own throw-away namespace of indices, deleted afterwards). The engines and fixtures are in
``tests/search_contract_kit.py``; the suite is this file (text, facets, geo, paging, writes) and its two
siblings: ``test_search_contract_order.py`` (listing events in any order) and
``test_search_contract_relevance.py`` (typo tolerance without floods, Dutch compounds).

Expectations come from brute force over the seeded corpus (``tests/search_kit.py``), never from the engine.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from handlers.search import InvalidRequest, SearchBackend, SearchRequest, Sort
from tests.search_contract_kit import (Engine, engine_fixture, every_page, fresh_fixture, ids,  # noqa: F401
                                      loaded_fixture, osmem_endpoint_fixture)
from tests.search_kit import (AMSTERDAM, CORPUS, MADRID, distance_km, expected_facets, expected_matches,
                              in_language, title_word, title_word_prefix)

pytestmark = pytest.mark.functional


# -- text ----------------------------------------------------------------------------------------------------
def test_search_typo_finds_iphone_with_fuzzy_and_nothing_without(loaded: SearchBackend) -> None:
    iphones = set(ids(expected_matches(SearchRequest("es"), text=title_word("iphone"))))
    assert iphones

    response = loaded.search(SearchRequest("es", text="iphnoe", page_size=len(iphones)))

    assert set(ids(list(response.hits))) == iphones
    assert response.total == len(iphones)
    assert loaded.search(SearchRequest("es", text="iphnoe", fuzzy=False)).total == 0


@pytest.mark.parametrize("language, query, title_words", [
    ("es", "bicicletas", ("bicicleta",)),
    ("nl", "stadsfietsen", ("stadsfiets",)),
    ("en", "bikes", ("bike",)),
    ("tr", "bisikletler", ("bisikleti",)),
    ("pt", "bicicletas", ("bicicleta",)),
], ids=["es", "nl", "en", "tr", "pt"])
def test_search_plural_finds_singular_titles_by_stemming_alone(engine: Engine, loaded: SearchBackend, language: str,
                                                               query: str, title_words: tuple[str, ...]) -> None:
    engine.skip_gap(f"stemming:{language}")
    expected = set(ids(expected_matches(SearchRequest(language), text=title_word(*title_words))))
    assert expected and all(query not in ad.title.casefold() for ad in in_language(CORPUS, language))

    hits = every_page(loaded, SearchRequest(language, text=query, fuzzy=False, page_size=50))

    assert set(ids(hits)) == expected


def test_search_spelling_mistake_gets_did_you_mean_from_the_index_vocabulary(loaded: SearchBackend) -> None:
    assert "bicicleta" in (loaded.search(SearchRequest("es", text="bicileta")).did_you_mean or "")
    assert "iphone" in (loaded.search(SearchRequest("es", text="iphnoe")).did_you_mean or "")
    assert loaded.search(SearchRequest("es", text="bicicleta montaña")).did_you_mean is None


# -- facets, filters and geo ------------------------------------------------------------------------------------
FACET_REQUESTS = {
    "all-es": SearchRequest("es"),
    "filters": SearchRequest("es", categories=("phones", "bikes", "furniture"), price_min=100, price_max=500),
    "radius": SearchRequest("es", lat=MADRID[0], lon=MADRID[1], radius_km=25),
    "point-no-radius": SearchRequest("nl", lat=AMSTERDAM[0], lon=AMSTERDAM[1]),
    "everything": SearchRequest("es", lat=MADRID[0], lon=MADRID[1], radius_km=150, categories=("furniture",),
                                price_min=50),
}


@pytest.mark.parametrize("name", FACET_REQUESTS)
def test_search_facets_equal_a_brute_force_count(loaded: SearchBackend, name: str) -> None:
    request = FACET_REQUESTS[name]
    expected = expected_matches(request)
    facets = expected_facets(expected, (request.lat, request.lon) if request.has_point else None)

    response = loaded.search(request)

    assert response.total == len(expected)
    assert {b.key: b.count for b in response.facets.categories} == facets["categories"]
    assert [b.count for b in response.facets.price_ranges] == facets["prices"]
    assert ([b.count for b in response.facets.distance_rings] or None) == facets["rings"]
    assert set(ids(every_page(loaded, replace(request, page_size=100)))) == set(ids(expected))


@pytest.mark.parametrize("point, sort", [(None, Sort.RELEVANCE), (None, Sort.PRICE_DESC), (MADRID, Sort.RELEVANCE)])
def test_search_text_facets_count_exactly_the_matching_listings(loaded: SearchBackend, point: tuple | None,
                                                                 sort: Sort) -> None:
    request = SearchRequest("es", text="bicicleta", lat=point and point[0], lon=point and point[1], sort=sort)
    expected = expected_matches(request, text=title_word("bicicleta"))

    response = loaded.search(request)

    facets = expected_facets(expected, point)
    assert response.total == len(expected)
    assert {b.key: b.count for b in response.facets.categories} == facets["categories"]
    assert [b.count for b in response.facets.price_ranges] == facets["prices"]
    assert ([b.count for b in response.facets.distance_rings] or None) == facets["rings"]


@pytest.mark.parametrize("language, point, radius_km", [
    ("es", MADRID, 1), ("es", MADRID, 5), ("es", MADRID, 12.5), ("es", MADRID, 60), ("es", MADRID, 500),
    ("nl", AMSTERDAM, 30),
])
def test_search_radius_filter_equals_brute_force_haversine(loaded: SearchBackend, language: str,
                                                           point: tuple[float, float], radius_km: float) -> None:
    request = SearchRequest(language, lat=point[0], lon=point[1], radius_km=radius_km, page_size=100)
    expected = {ad.item_id: distance_km(point[0], point[1], ad.lat, ad.lon) for ad in expected_matches(request)}

    hits = every_page(loaded, request)

    assert sorted(ids(hits)) == sorted(expected)
    for hit in hits:
        assert hit.distance_km == pytest.approx(expected[hit.ad.item_id], abs=1e-6)


def test_search_distance_sort_returns_nearest_first(loaded: SearchBackend) -> None:
    request = SearchRequest("es", lat=MADRID[0], lon=MADRID[1], sort=Sort.DISTANCE, page_size=9)
    expected = sorted(distance_km(MADRID[0], MADRID[1], ad.lat, ad.lon) for ad in in_language(CORPUS, "es"))

    hits = every_page(loaded, request)

    assert len(hits) == len(expected)
    assert [h.distance_km for h in hits] == pytest.approx(expected, abs=1e-6)


# -- autocomplete -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("language, prefix, words", [
    ("es", "bici", ("bici",)), ("es", "iph", ("iph",)), ("es", "Bicicleta de m", ("bicicleta", "de", "m")),
    ("nl", "stadsf", ("stadsf",)), ("es", "zzqx", ("zzqx",)),
])
def test_autocomplete_completes_titles_from_the_index(loaded: SearchBackend, language: str, prefix: str,
                                                      words: tuple[str, ...]) -> None:
    matches = title_word_prefix(*words)
    candidates = {ad.title.casefold() for ad in in_language(CORPUS, language) if matches(ad.title)}

    suggestions = loaded.autocomplete(prefix, language, limit=5)

    texts = [s.text.casefold() for s in suggestions]
    assert len(texts) == min(5, len(candidates)) == len(set(texts))
    assert set(texts) <= candidates


def test_autocomplete_with_a_point_reports_distances(loaded: SearchBackend) -> None:
    by_id = {ad.item_id: ad for ad in CORPUS}

    suggestions = loaded.autocomplete("iph", "es", limit=3, lat=MADRID[0], lon=MADRID[1])

    assert suggestions
    for s in suggestions:
        ad = by_id[s.item_id]
        assert s.text == ad.title
        assert s.distance_km == pytest.approx(distance_km(MADRID[0], MADRID[1], ad.lat, ad.lon), abs=1e-6)


# -- paging -----------------------------------------------------------------------------------------------------
PAGING = {
    "relevance-text": SearchRequest("es", text="como nuevo", page_size=4),
    "relevance-point": SearchRequest("es", lat=MADRID[0], lon=MADRID[1], page_size=7),
    "distance": SearchRequest("es", lat=MADRID[0], lon=MADRID[1], radius_km=300, sort=Sort.DISTANCE, page_size=7),
    "newest": SearchRequest("es", sort=Sort.NEWEST, page_size=7),
    "newest-point": SearchRequest("es", lat=MADRID[0], lon=MADRID[1], sort=Sort.NEWEST, page_size=7),
    "price_asc": SearchRequest("es", sort=Sort.PRICE_ASC, page_size=7),
    "price_asc-filtered": SearchRequest("es", sort=Sort.PRICE_ASC, categories=("bikes", "phones"), price_min=150,
                                        page_size=3),
    "price_asc-point": SearchRequest("es", lat=MADRID[0], lon=MADRID[1], sort=Sort.PRICE_ASC, page_size=5),
    "price_desc": SearchRequest("nl", sort=Sort.PRICE_DESC, price_max=1000, page_size=6),
}


@pytest.mark.parametrize("name", PAGING)
def test_search_cursor_pages_return_every_match_exactly_once_in_order(engine: Engine, loaded: SearchBackend,
                                                                      name: str) -> None:
    request = PAGING[name]
    if request.sort is Sort.RELEVANCE:
        engine.skip_gap("paging:relevance")
    first = loaded.search(request)

    hits = every_page(loaded, request)

    assert len(hits) == first.total == len(set(ids(hits)))
    if not request.text:
        assert set(ids(hits)) == set(ids(expected_matches(request)))
    key = {Sort.RELEVANCE: lambda h: -h.score if h.score is not None else -h.ad.listed_at,
           Sort.DISTANCE: lambda h: h.distance_km, Sort.NEWEST: lambda h: -h.ad.listed_at,
           Sort.PRICE_ASC: lambda h: h.ad.price, Sort.PRICE_DESC: lambda h: -h.ad.price}[request.sort]
    values = [key(h) for h in hits]
    assert all(a <= b + 1e-9 for a, b in zip(values, values[1:]))


def test_search_cursor_of_another_query_is_refused(loaded: SearchBackend) -> None:
    cursor = loaded.search(SearchRequest("es", sort=Sort.NEWEST, page_size=3)).next_cursor
    assert cursor

    with pytest.raises(InvalidRequest) as refused:
        loaded.search(SearchRequest("es", sort=Sort.PRICE_ASC, page_size=3, cursor=cursor))

    assert refused.value.field == "cursor"


# -- writing ----------------------------------------------------------------------------------------------------
def test_index_twice_replaces_and_remove_is_idempotent(fresh: SearchBackend) -> None:
    spanish = in_language(CORPUS, "es")[:30]
    fresh.index(spanish)
    fresh.index(spanish)  # again: replaces, never duplicates
    fresh.refresh()
    assert fresh.search(SearchRequest("es")).total == 30

    changed = replace(spanish[0], price=123456.0)
    fresh.index([replace(spanish[1], price=1.0), replace(spanish[1], price=2.0), changed])  # last one wins
    fresh.remove([spanish[2].item_id, spanish[3].item_id, "never-indexed"])
    fresh.remove([spanish[2].item_id])
    fresh.refresh()

    everything = {h.ad.item_id: h.ad for h in every_page(fresh, SearchRequest("es", page_size=100))}
    assert set(everything) == {ad.item_id for ad in spanish} - {spanish[2].item_id, spanish[3].item_id}
    assert everything[changed.item_id].price == 123456.0
    assert everything[spanish[1].item_id].price == 2.0


def test_fetch_returns_the_indexed_version_without_a_refresh(fresh: SearchBackend) -> None:
    spanish, dutch = in_language(CORPUS, "es")[0], in_language(CORPUS, "nl")[0]
    fresh.index([spanish, dutch])

    assert fresh.fetch([dutch.item_id, "never-indexed", spanish.item_id]) == {spanish.item_id: spanish,
                                                                           dutch.item_id: dutch}
    fresh.index([replace(spanish, price=5.0)])
    fresh.remove([dutch.item_id])
    assert fresh.fetch([spanish.item_id, dutch.item_id]) == {spanish.item_id: replace(spanish, price=5.0)}
    assert fresh.fetch([]) == {}


def test_index_with_a_new_language_moves_the_listing(fresh: SearchBackend) -> None:
    ad = in_language(CORPUS, "es")[0]
    fresh.index([ad])
    fresh.refresh()

    fresh.index([replace(ad, language="nl", country="NL")])
    fresh.refresh()

    assert fresh.search(SearchRequest("es")).total == 0
    assert ids(list(fresh.search(SearchRequest("nl")).hits)) == [ad.item_id]


def test_setup_twice_keeps_the_data(fresh: SearchBackend) -> None:
    fresh.index(in_language(CORPUS, "pt")[:5])
    fresh.refresh()

    fresh.setup()

    assert fresh.search(SearchRequest("pt")).total == 5
