"""The search page in a real headless browser (Debian's chromium) over the real app and engine.

The app runs on a free 127.0.0.1 port over the embedded engine loaded with the seeded corpus; chromium is
driven over the DevTools protocol (``tests/search_api_kit.Browser``): real page loads, real script, real
mouse clicks and typing. What the page shows is compared with what the API answers for the same request
and with brute-force answers from the corpus. Every test also requires a clean console: no script error,
no Content-Security-Policy violation, no failed asset.

Skipped only when chromium is missing and ``LETGO_REQUIRE_BROWSER`` is unset; the test command installs
chromium and sets it, so in CI a missing browser is a failure.
"""
from __future__ import annotations

import os
import urllib.parse
from typing import Any, Iterator

import pytest

from handlers.search.api import create_app
from handlers.search.model import SearchRequest
from letgo.services import BackgroundServer
from tests.search_api_kit import BROWSER_ENV, Browser, call, find_chromium, loaded_backend
from tests.search_kit import (AMSTERDAM, CORPUS, MADRID, distance_km, expected_facets, expected_matches, in_language,
                              text_word, title_word)

pytestmark = pytest.mark.e2e

MADRID_Q = {"lat": MADRID[0], "lon": MADRID[1]}


@pytest.fixture(scope="module")
def chromium() -> str:
    executable = find_chromium()
    if executable is None:
        if os.environ.get(BROWSER_ENV):
            pytest.fail(f"{BROWSER_ENV} is set but no chromium was found (apt-get install chromium)")
        pytest.skip(f"chromium is not installed (apt-get install chromium); set {BROWSER_ENV}=1 to fail instead")
    return executable


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with loaded_backend() as backend, BackgroundServer(create_app(backend)) as running:
        yield running.url


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with Browser(chromium, accept_language="en-US,en") as opened:
        yield opened


@pytest.fixture
def page(browser: Browser) -> Iterator[Browser]:
    """The shared browser, its console cleared; the test fails on any script or load problem it caused."""
    browser.clear_problems()
    yield browser
    assert browser.problems() == []


def url(server: str, **params: Any) -> str:
    return f"{server}/?{urllib.parse.urlencode(params, doseq=True)}"


def api_search(server: str, **params: Any) -> dict:
    reply = call(server, "/search", {"page_size": 20, **params})
    assert reply.status == 200, reply.body
    return reply.body


# -- what the page shows, read from its DOM ----------------------------------------------------------------------
def titles(page: Browser) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('#results .hit .title')].map(e => e.textContent)")


def item_ids(page: Browser) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('#results .hit')].map(e => e.dataset.itemId)")


def facet(page: Browser, list_id: str, attribute: str = "count") -> dict[str, int]:
    return {k: int(v) for k, v in page.evaluate(
        f"[...document.querySelectorAll('#{list_id} li[data-key]')].map(e => [e.dataset.key, e.dataset.{attribute}])")}


def status(page: Browser) -> dict[str, str]:
    return page.evaluate("({...document.getElementById('status').dataset})")


def status_text(page: Browser) -> str:
    return page.evaluate("document.getElementById('status').textContent")


def spanish_money(amount: float) -> str:
    """How es-ES writes a euro price (CLDR): '.' between thousands, always; ',' before cents; a no-break space."""
    whole, cents = divmod(round(amount * 100), 100)
    grouped = f"{whole:,}".replace(",", ".")
    return f"{grouped}\u00a0€" if amount == int(amount) else f"{grouped},{cents:02d}\u00a0€"


def api_facets(body: dict) -> dict[str, dict[str, int]]:
    return {name: {b["key"]: b["count"] for b in body["facets"][name]}
            for name in ("categories", "price_ranges", "distance_rings")}


# -- the tests -----------------------------------------------------------------------------------------------------
def test_page_opened_with_a_typo_shows_the_fuzzy_results_did_you_mean_and_the_apis_facets(page: Browser,
                                                                                          server: str) -> None:
    params = {"q": "bicileta", **MADRID_Q, "language": "es"}
    expected = expected_matches(SearchRequest("es"), text=lambda ad: title_word("bicicleta")(ad)
                                or text_word("bicileta")(ad))
    answer = api_search(server, **params)

    page.open(url(server, **params))

    assert page.evaluate("document.body.dataset.state") == "ready"
    assert titles(page) == [hit["title"] for hit in answer["hits"]]
    assert set(item_ids(page)) == {ad.item_id for ad in expected}
    assert status(page) == {"total": str(len(expected)), "language": "es", "reason": "explicit"}
    exact = {ad.item_id for ad in expected if text_word("bicileta")(ad)}
    marked = page.evaluate("[...document.querySelectorAll('#results .hit')].map(e => e.dataset.approximate)")
    assert marked == ["false"] * len(exact) + ["true"] * (len(marked) - len(exact))  # exact ones first
    assert f"{len(expected) - len(exact)} of them with a similar spelling" in status_text(page)
    assert page.evaluate("!document.getElementById('did-you-mean').hidden")
    assert page.evaluate("document.getElementById('did-you-mean-link').textContent") == answer["did_you_mean"]
    assert "bicicleta" in answer["did_you_mean"]
    shown = {"categories": facet(page, "facet-categories"), "price_ranges": facet(page, "facet-prices"),
             "distance_rings": facet(page, "facet-rings", "ring")}
    assert shown == api_facets(answer)
    brute = expected_facets(expected, MADRID)
    assert shown["categories"] == brute["categories"] and list(shown["distance_rings"].values()) == brute["rings"]


def test_page_did_you_mean_link_searches_the_correction(page: Browser, server: str) -> None:
    page.open(url(server, q="bicileta", **MADRID_Q, language="es"))
    expected = expected_matches(SearchRequest("es"), text=title_word("bicicleta"))
    before = page.renders()

    page.click("#did-you-mean-link")

    assert page.settled_after(before) == "ready"
    assert urllib.parse.parse_qs(page.evaluate("location.search")[1:])["q"] == ["bicicleta"]
    assert page.evaluate("document.getElementById('q').value") == "bicicleta"
    assert page.evaluate("document.getElementById('did-you-mean').hidden")
    assert set(item_ids(page)) == {ad.item_id for ad in expected}


def test_page_suggests_titles_while_typing_and_the_keyboard_picks_one(page: Browser, server: str) -> None:
    page.open(url(server, **MADRID_Q, language="es"))
    suggested = call(server, "/autocomplete", {"q": "bici", "limit": 8, **MADRID_Q, "language": "es"}).body

    page.type("#q", "bici")
    shown = page.wait_for("!document.getElementById('suggestions').hidden && "
                          "[...document.querySelectorAll('#suggestions li .text')].map(e => e.textContent)",
                          what="the suggestions list")

    assert shown == [s["text"] for s in suggested["suggestions"]] and shown
    before = page.renders()
    page.press("ArrowDown")
    page.press("Enter")
    assert page.settled_after(before) == "ready"
    assert page.evaluate("document.getElementById('q').value") == shown[0]
    assert page.evaluate("document.getElementById('suggestions').hidden")
    answer = api_search(server, q=shown[0], **MADRID_Q, language="es")
    assert titles(page) == [hit["title"] for hit in answer["hits"]]


def test_page_more_results_button_pages_through_every_listing_once(page: Browser, server: str) -> None:
    dutch = {ad.item_id for ad in in_language(CORPUS, "nl")}
    assert len(dutch) > 40  # three pages of 20
    page.open(url(server, language="nl", sort="newest"))

    clicks = 0
    while page.evaluate("!document.getElementById('more').hidden"):
        before = page.renders()
        page.click("#more")
        assert page.settled_after(before) == "ready"
        clicks += 1
        assert clicks < 10

    shown = item_ids(page)
    assert len(shown) == len(set(shown)) == len(dutch) and set(shown) == dutch
    assert clicks == -(-len(dutch) // 20) - 1
    assert status(page)["total"] == str(len(dutch))


def test_page_category_and_price_facets_filter_the_results(page: Browser, server: str) -> None:
    spanish = in_language(CORPUS, "es")
    bikes = [ad for ad in spanish if ad.category == "bikes"]
    page.open(url(server, language="es"))
    assert facet(page, "facet-categories")["bikes"] == len(bikes)

    before = page.renders()
    page.click('#facet-categories li[data-key="bikes"] input')
    assert page.settled_after(before) == "ready"

    assert status(page)["total"] == str(len(bikes))
    shown = page.evaluate("[...document.querySelectorAll('#results .hit')].map(e => e.dataset.category)")
    assert set(shown) == {"bikes"}
    counts = facet(page, "facet-categories")  # the other categories stay listed, with their unfiltered counts
    assert counts == expected_facets(spanish, None)["categories"]
    assert urllib.parse.parse_qs(page.evaluate("location.search")[1:])["category"] == ["bikes"]

    bucket = next(key for key, count in facet(page, "facet-prices").items() if count > 0 and not key.endswith("*"))
    low, high = (float(x) for x in bucket.split("-"))
    in_range = [ad for ad in bikes if low <= ad.price < high]  # facet buckets are [low, high)
    before = page.renders()
    page.click(f'#facet-prices li[data-key="{bucket}"] button')
    assert page.settled_after(before) == "ready"

    assert status(page)["total"] == str(len(in_range)) == str(facet(page, "facet-prices")[bucket])
    assert set(item_ids(page)) == {ad.item_id for ad in in_range}


def test_page_near_amsterdam_in_a_dutch_browser_shows_dutch_listings_and_distance_rings(chromium: str,
                                                                                        server: str) -> None:
    dutch = in_language(CORPUS, "nl")
    rings = expected_facets(dutch, AMSTERDAM)["rings"]
    with Browser(chromium, accept_language="nl-NL,nl;q=0.9") as page:
        page.open(url(server))
        before = page.renders()
        page.evaluate("(() => { const s = document.getElementById('place'); s.value = 'amsterdam'; "
                      "s.dispatchEvent(new Event('change')); })()")
        assert page.settled_after(before) == "ready"

        assert status(page) == {"total": str(len(dutch)), "language": "nl", "reason": "point"}
        assert list(facet(page, "facet-rings", "ring").values()) == rings
        assert page.evaluate("document.getElementById('lat').value") == str(AMSTERDAM[0])

        within = sum(rings[:3])  # the rings [0, 1), [1, 5), [5, 10): "within 10 km"
        before = page.renders()
        page.click('#facet-rings li[data-key="5-10"] button')
        assert page.settled_after(before) == "ready"

        assert status(page)["total"] == str(within)
        near = {ad.item_id for ad in dutch if distance_km(*AMSTERDAM, ad.lat, ad.lon) <= 10}
        assert set(item_ids(page)) == near
        assert urllib.parse.parse_qs(page.evaluate("location.search")[1:])["radius_km"] == ["10"]
        assert page.problems() == []


def test_page_shows_the_apis_400_and_marks_the_field(page: Browser, server: str) -> None:
    answer = call(server, "/search", {"lat": "NaN", "lon": "0", "page_size": 20})

    page.open(url(server, lat="north", lon="0"))

    assert page.evaluate("document.body.dataset.state") == "error"
    assert page.evaluate("document.getElementById('error').textContent") == answer.error["message"]
    assert page.evaluate("document.getElementById('error').dataset.field") == "lat" == answer.error["field"]
    assert page.evaluate("document.getElementById('lat').getAttribute('aria-invalid')") == "true"
    failed_loads = [p for p in page.problems() if "status of 400" in p]
    assert len(failed_loads) == 1  # the browser logs the refused request itself; nothing else went wrong
    page.clear_problems()


def test_page_writes_prices_and_dates_in_the_ads_locale_not_the_browsers(page: Browser, server: str) -> None:
    from datetime import datetime, timezone

    page.open(url(server, language="es", sort="price_desc", price_min=900))  # an en-US browser, Spanish ads
    by_id = {ad.item_id: ad for ad in CORPUS}

    shown = page.evaluate("[...document.querySelectorAll('#results .hit')].map(e => "
                          "[e.dataset.itemId, e.querySelector('.meta').textContent])")

    assert shown and any(by_id[item].price >= 1000 for item, _ in shown)
    for item, meta in shown:
        ad = by_id[item]
        if ad.country != "ES" or ad.language != "es":
            continue
        day = datetime.fromtimestamp(ad.listed_at, timezone.utc)
        assert meta.startswith(spanish_money(ad.price) + " · "), meta  # 1.220 € (not €1,220.00)
        assert f"{day.day}/{day.month}/{day.year}" in meta  # 2/12/2026 (d/m/yyyy)
    assert "Spanish listings: the language you chose" in status_text(page)


def test_page_english_browser_in_madrid_sees_spanish_listings_and_is_offered_the_english_ones(
        chromium: str, server: str) -> None:
    english_here = [ad for ad in in_language(CORPUS, "en") if ad.country == "ES" and title_word("bike")(ad)]
    with Browser(chromium, accept_language="en-GB,en;q=0.9") as page:
        page.open(url(server, q="bicicleta", country="ES"))
        assert status(page)["language"] == "es" and status(page)["reason"] == "country"
        assert "Spanish listings: the language of listings in Spain" in status_text(page)
        assert page.evaluate("document.getElementById('help').hidden")  # it found something: no help

        before = page.renders()
        page.evaluate("(() => { const q = document.getElementById('q'); q.value = 'bike'; "
                      "document.getElementById('search-form').requestSubmit(); })()")
        assert page.settled_after(before) == "ready"
        assert status(page)["total"] == "0" and not page.evaluate("document.getElementById('help').hidden")
        offers = page.evaluate("[...document.querySelectorAll('#help-list li')].map(e => [e.dataset.kind, "
                               "e.dataset.language, e.textContent])")
        assert offers == [["language", "en", f"{len(english_here)} in English listings here"]]

        before = page.renders()
        page.click('#help-list li[data-kind="language"] button')
        assert page.settled_after(before) == "ready"
        assert set(item_ids(page)) == {ad.item_id for ad in english_here}
        assert status(page)["language"] == "en" and status(page)["reason"] == "explicit"
        assert page.problems() == []


def test_page_nothing_within_the_radius_offers_the_nearest_ring_with_matches(page: Browser, server: str) -> None:
    answer = api_search(server, q="bicicleta", **MADRID_Q, radius_km=0.3, language="es")
    assert answer["total"] == 0 and answer["wider"]

    page.open(url(server, q="bicicleta", **MADRID_Q, radius_km=0.3, language="es"))
    radius = f"{answer['wider']['radius_km']:g}"
    wider = page.evaluate("[...document.querySelectorAll('#help-list li[data-kind=radius]')]"
                          ".map(e => e.dataset.radius)")
    assert wider == [radius]
    before = page.renders()
    page.click('#help-list li[data-kind="radius"] button')
    assert page.settled_after(before) == "ready"

    assert status(page)["total"] == str(answer["wider"]["total"])
    assert urllib.parse.parse_qs(page.evaluate("location.search")[1:])["radius_km"] == [radius]
