"""The search contract, relevance: typo tolerance without floods, and Dutch compounds — on every engine.

The cases of issue 13, each against a brute-force expectation over the corpus (``tests/search_kit.py``): a query
that matches plenty by stemming gets no fuzzy matches and no did-you-mean ("bikes" has no Nike trainers and no
"like new" phones); a word that exists is never read as another ("casco" is not "Casio"); a model number is not a
typo ("s23" is not "s22"); when the typo fallback does run ("bicileta": no title has it, one description does),
every exact match comes before every approximate one in every sort, across pages; "fiets" finds "Stadsfiets"
and "Kinderfiets" but no "Fietstas", "bank" finds "Driezitsbank" and "Hoekbank" but no "Bankstel".
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from handlers.search import SearchBackend, SearchRequest, Sort
from tests.search_contract_kit import (Engine, engine_fixture, every_page, ids, loaded_fixture,  # noqa: F401
                                       osmem_endpoint_fixture)
from tests.search_kit import (CORPUS, MADRID, edit_distance, expected_matches, in_language, text_word,
                              title_word, title_word_ending, title_words)

pytestmark = pytest.mark.functional

ALL_SORTS = [Sort.RELEVANCE, Sort.PRICE_ASC, Sort.PRICE_DESC, Sort.NEWEST]


def pages(engine: Engine, backend: SearchBackend, request: SearchRequest):
    if request.sort is Sort.RELEVANCE and request.page_size < 100:
        engine.skip_gap("paging:relevance")
    return every_page(backend, request)


@pytest.mark.parametrize("sort", ALL_SORTS, ids=lambda s: s.value)
def test_plenty_of_stemmed_matches_get_no_fuzzy_matches_and_no_did_you_mean(loaded: SearchBackend,
                                                                            sort: Sort) -> None:
    expected = set(ids(expected_matches(SearchRequest("en"), text=title_word("bike", "bikes"))))
    assert expected and not any("bikes" in ad.title.casefold() for ad in in_language(CORPUS, "en"))

    request = SearchRequest("en", text="bikes", sort=sort, page_size=100)
    response = loaded.search(request)

    assert set(ids(list(response.hits))) == expected and response.total == len(expected)
    assert response.approximate == 0 and response.did_you_mean is None
    assert not any(hit.approximate for hit in response.hits)


def test_a_word_that_exists_is_never_read_as_another(loaded: SearchBackend) -> None:
    helmets = set(ids(expected_matches(SearchRequest("es"), text=title_word("casco"))))
    casios = set(ids(expected_matches(SearchRequest("es"), text=title_word("casio"))))
    assert helmets and casios and len(helmets) < 10  # few, yet "casco" exists: no fallback for it

    response = loaded.search(SearchRequest("es", text="casco", page_size=100))

    assert set(ids(list(response.hits))) == helmets
    assert response.approximate == 0 and response.did_you_mean is None


def test_a_model_number_is_not_a_typo(loaded: SearchBackend) -> None:
    wanted = [title_word("samsung"), title_word("galaxy"), title_word("s23")]
    expected = set(ids(expected_matches(SearchRequest("es"), text=lambda ad: all(w(ad) for w in wanted))))
    assert expected

    response = loaded.search(SearchRequest("es", text="samsung galaxy s23", page_size=100))

    assert set(ids(list(response.hits))) == expected and response.approximate == 0
    assert all("s23" in h.ad.title.casefold() for h in response.hits)


@pytest.mark.parametrize("sort", [*ALL_SORTS, Sort.DISTANCE], ids=lambda s: s.value)
def test_the_typo_fallback_puts_every_exact_match_before_every_approximate_one(engine: Engine, loaded: SearchBackend,
                                                                               sort: Sort) -> None:
    spanish = in_language(CORPUS, "es")
    near = {w for w in title_words(spanish) if w[:1] == "b" and edit_distance(w, "bicileta") <= 2}
    assert near == {"bicicleta"}  # the only spelling within reach, so brute force is simple
    exact = set(ids(expected_matches(SearchRequest("es"), text=text_word("bicileta"))))  # a description has it
    approximate = set(ids(expected_matches(SearchRequest("es"), text=title_word("bicicleta")))) - exact
    assert exact and approximate
    point = MADRID if sort is Sort.DISTANCE else (None, None)
    request = SearchRequest("es", text="bicileta", sort=sort, lat=point[0], lon=point[1], page_size=3)

    first = loaded.search(request)
    hits = pages(engine, loaded, request)

    assert first.total == len(exact) + len(approximate) and first.approximate == len(approximate)
    assert first.did_you_mean == "bicicleta"
    assert [h.ad.item_id for h in hits[:len(exact)]] and set(ids(hits[:len(exact)])) == exact
    assert set(ids(hits[len(exact):])) == approximate and len(hits) == len(set(ids(hits)))
    assert [h.approximate for h in hits] == [False] * len(exact) + [True] * len(approximate)
    assert loaded.search(replace(request, fuzzy=False)).total == len(exact)


def test_did_you_mean_only_when_the_query_matched_little(loaded: SearchBackend) -> None:
    assert loaded.search(SearchRequest("es", text="bicicletas")).did_you_mean is None  # stemmed: plenty
    assert loaded.search(SearchRequest("es", text="iphnoe")).did_you_mean == "iphone"


@pytest.mark.parametrize("query, heads, not_these", [
    ("fiets", ("fiets", "fietsen"), ("fietstas", "fietsenrek")),
    ("bank", ("bank", "bankje"), ("bankstel",)),
], ids=["fiets", "bank"])
def test_dutch_compounds_are_found_by_their_head_only(engine: Engine, loaded: SearchBackend, query: str,
                                                      heads: tuple[str, ...], not_these: tuple[str, ...]) -> None:
    engine.skip_gap("stemming:nl")
    expected = set(ids(expected_matches(SearchRequest("nl"), text=title_word_ending(*heads))))
    unwanted = set(ids(expected_matches(SearchRequest("nl"), text=title_word(*not_these))))
    assert len(expected) > 3 and unwanted and not expected & unwanted

    response = loaded.search(SearchRequest("nl", text=query, fuzzy=False, page_size=100))

    assert set(ids(list(response.hits))) == expected and response.total == len(expected)


def test_a_compound_query_does_not_widen_to_its_head(engine: Engine, loaded: SearchBackend) -> None:
    engine.skip_gap("stemming:nl")
    expected = set(ids(expected_matches(SearchRequest("nl"), text=title_word("stadsfiets", "stadsfietsen"))))

    response = loaded.search(SearchRequest("nl", text="stadsfiets", fuzzy=False, page_size=100))

    assert set(ids(list(response.hits))) == expected  # no Kinderfiets, no plain Fiets
