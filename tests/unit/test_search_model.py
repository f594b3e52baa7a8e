"""The search domain values: request bounds checked in one place, listings from events, cursors, facets, geo."""
from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from werkzeug.datastructures import MultiDict

from handlers.search.backend import bounded_edit_distance
from handlers.search.errors import InvalidAd, InvalidRequest
from handlers.search.geo import bounding_boxes, haversine_km
from handlers.search.model import (CATEGORIES, CONDITIONS, CURRENCIES, Ad, AutocompleteRequest, Cursor, Facets,
                                   SearchRequest, Sort, range_keys)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LISTED = {"item_id": "it-123", "seller_id": "u-2002", "title": "Bicicleta de montaña Trek", "category": "bikes",
          "price": 250.5, "currency": "EUR", "condition": "good", "location": {"lat": 40.41, "lon": -3.7},
          "city": "Madrid", "country": "ES", "language": "es", "image_count": 3, "description": "Como nueva."}


def test_taxonomy_is_the_event_types_taxonomy() -> None:
    shared = yaml.safe_load((ROOT / "event_types" / "_shared.yaml").read_text(encoding="utf-8"))["fields"]
    assert CATEGORIES == tuple(shared["category"]["values"])
    assert CONDITIONS == tuple(shared["condition"]["values"])
    assert CURRENCIES == tuple(shared["currency"]["values"])


# -- requests ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, field", [
    (dict(lat=90.0001, lon=0), "lat"), (dict(lat=-91, lon=0), "lat"), (dict(lat=0, lon=180.5), "lon"),
    (dict(lat=0, lon=-181), "lon"), (dict(lat=40.0), "lon"), (dict(lon=-3.0), "lat"),
    (dict(lat=float("nan"), lon=0), "lat"), (dict(lat="north", lon=0), "lat"),
    (dict(radius_km=5), "radius_km"), (dict(lat=0, lon=0, radius_km=0), "radius_km"),
    (dict(lat=0, lon=0, radius_km=-1), "radius_km"), (dict(lat=0, lon=0, radius_km=500.01), "radius_km"),
    (dict(lat=0, lon=0, radius_km=math.inf), "radius_km"),
    (dict(page_size=0), "page_size"), (dict(page_size=101), "page_size"), (dict(page_size="10"), "page_size"),
    (dict(page_size=True), "page_size"), (dict(text="x" * 201), "q"), (dict(categories=("bikes", "boats")), "category"),
    (dict(price_min=-1), "price_min"), (dict(price_max=1e12), "price_max"),
    (dict(price_min=10, price_max=5), "price_min"),
    (dict(sort="cheapest"), "sort"), (dict(sort=Sort.DISTANCE), "sort"), (dict(language="fr"), "language"),
    (dict(cursor=""), "cursor"), (dict(cursor="x" * 1025), "cursor"),
])
def test_search_request_out_of_bounds_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        SearchRequest(**{"language": "es", **changes})

    assert refused.value.field == field
    assert refused.value.status_code == 400
    assert refused.value.to_dict() == {"error": "invalid_request", "field": field, "reason": refused.value.reason}


def test_search_request_accepts_the_bounds_themselves() -> None:
    request = SearchRequest("es", text="  bici   roja " + "x" * 190, lat=-90, lon=180, radius_km=500,
                            categories=("phones", "bikes", "phones"), price_min=0, price_max=0, page_size=100,
                            sort="distance")

    assert len(request.text) == 200 and request.text.startswith("bici roja x")
    assert request.categories == ("bikes", "phones")
    assert request.sort is Sort.DISTANCE
    assert SearchRequest("es", page_size=1).page_size == 1


def test_search_request_from_query_string_parameters() -> None:
    params = MultiDict([("q", "iphone"), ("lat", "40.4"), ("lon", "-3.7"), ("radius_km", "10"),
                        ("category", "phones,electronics"), ("category", "computers"), ("price_max", "500"),
                        ("sort", "price_asc"), ("page_size", "50"), ("fuzzy", "false"), ("lang", "ignored")])

    request = SearchRequest.from_params(params, "es")

    assert request == SearchRequest("es", text="iphone", lat=40.4, lon=-3.7, radius_km=10.0,
                                    categories=("computers", "electronics", "phones"), price_max=500.0,
                                    sort=Sort.PRICE_ASC, page_size=50, fuzzy=False)
    assert SearchRequest.from_params({}, "nl") == SearchRequest("nl")


@pytest.mark.parametrize("params, field", [
    ({"lat": "abc", "lon": "1"}, "lat"), ({"page_size": "ten"}, "page_size"), ({"fuzzy": "maybe"}, "fuzzy"),
    ({"radius_km": "5"}, "radius_km"), ({"price_min": "inf"}, "price_min"),
])
def test_search_request_from_bad_parameters_names_the_field(params: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        SearchRequest.from_params(params, "es")
    assert refused.value.field == field


@pytest.mark.parametrize("changes, field", [
    (dict(prefix="   "), "prefix"), (dict(prefix="a" * 101), "prefix"), (dict(limit=0), "limit"),
    (dict(limit=21), "limit"), (dict(lat=100, lon=0), "lat"), (dict(language="xx"), "language"),
])
def test_autocomplete_request_out_of_bounds_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        AutocompleteRequest(**{"prefix": "bici", "language": "es", **changes})
    assert refused.value.field == field


def test_autocomplete_request_keeps_a_trailing_space_as_a_finished_word() -> None:
    assert AutocompleteRequest("  bicicleta   de ", "es").prefix == "bicicleta de "
    assert AutocompleteRequest("bici", "es").prefix == "bici"


# -- cursors ----------------------------------------------------------------------------------------------------
def test_cursor_round_trips_for_the_same_query_and_ignores_page_size() -> None:
    request = SearchRequest("es", text="sofa", sort=Sort.NEWEST)
    token = Cursor((-1.5e9, 42), 1795700000.25).encode(request, "tantivy")

    assert Cursor.decode(replace(request, cursor=token, page_size=50), "tantivy") == Cursor((-1.5e9, 42), 1795700000.25)
    assert Cursor.decode(request, "tantivy") is None


@pytest.mark.parametrize("other", [
    SearchRequest("es", text="sofas", sort=Sort.NEWEST), SearchRequest("es", text="sofa", sort=Sort.PRICE_ASC),
    SearchRequest("nl", text="sofa", sort=Sort.NEWEST), SearchRequest("es", text="sofa", sort=Sort.NEWEST, price_min=1),
])
def test_cursor_of_another_query_is_refused(other: SearchRequest) -> None:
    token = Cursor((1.0, 2), 0.0).encode(SearchRequest("es", text="sofa", sort=Sort.NEWEST), "tantivy")

    with pytest.raises(InvalidRequest, match="another query"):
        Cursor.decode(replace(other, cursor=token), "tantivy")
    with pytest.raises(InvalidRequest, match="another query"):  # nor from another backend
        Cursor.decode(SearchRequest("es", text="sofa", sort=Sort.NEWEST, cursor=token), "opensearch")


@pytest.mark.parametrize("token", ["not-base64!", "e30", "eyJhIjoxfQ", "////"])
def test_cursor_tampered_is_refused(token: str) -> None:
    with pytest.raises(InvalidRequest, match="malformed"):
        Cursor.decode(SearchRequest("es", cursor=token), "tantivy")


# -- listings ---------------------------------------------------------------------------------------------------
def test_ad_from_item_listed_and_updated() -> None:
    ad = Ad.from_item_listed(LISTED, "2026-11-26T10:00:00.123Z")

    assert (ad.item_id, ad.lat, ad.lon, ad.price, ad.image_count) == ("it-123", 40.41, -3.7, 250.5, 3)
    assert ad.listed_at == datetime(2026, 11, 26, 10, 0, 0, 123000, tzinfo=timezone.utc).timestamp()
    moved = ad.updated({"item_id": "it-123", "seller_id": "u-2002", "price": 199, "previous_price": 250.5,
                        "location": {"lat": 41.39, "lon": 2.17}})
    assert (moved.price, moved.lat, moved.lon, moved.title) == (199.0, 41.39, 2.17, ad.title)
    assert Ad.from_dict(ad.to_dict()) == ad


@pytest.mark.parametrize("changes, field", [
    (dict(category="boats"), "category"), (dict(price=-1), "price"), (dict(price="cheap"), "price"),
    (dict(location={"lat": 91, "lon": 0}), "location"), (dict(title="  "), "title"), (dict(item_id=""), "item_id"),
])
def test_ad_invalid_names_the_item_and_field(changes: dict, field: str) -> None:
    with pytest.raises(InvalidAd) as refused:
        Ad.from_item_listed({**LISTED, **changes}, 1795700000)
    assert refused.value.field == field
    assert refused.value.item_id == (changes.get("item_id", "it-123") or None)


def test_ad_listed_at_needs_a_time_zone_or_epoch() -> None:
    assert Ad.from_item_listed(LISTED, datetime(2026, 1, 1, tzinfo=timezone.utc)).listed_at == 1767225600
    with pytest.raises(InvalidAd, match="time zone"):
        Ad.from_item_listed(LISTED, datetime(2026, 1, 1))
    with pytest.raises(InvalidAd) as missing:
        Ad.from_item_listed({k: v for k, v in LISTED.items() if k != "currency"}, 0)
    assert missing.value.field == "currency"


# -- facets -----------------------------------------------------------------------------------------------------
def test_facet_buckets_are_half_open_ranges_from_zero() -> None:
    assert range_keys((1, 5)) == [("0-1", 0.0, 1.0), ("1-5", 1.0, 5.0), ("5-*", 5.0, None)]

    facets = Facets.build({"bikes": 2, "phones": 5, "cars": 2, "jobs": 0}, [1, 2, 3, 4, 5, 6, 7], None)

    assert [(b.key, b.count) for b in facets.categories] == [("phones", 5), ("bikes", 2), ("cars", 2)]
    assert [b.key for b in facets.price_ranges] == ["0-50", "50-100", "100-250", "250-500", "500-1000",
                                                     "1000-5000", "5000-*"]
    assert facets.distance_rings == ()


# -- shared matching rules --------------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b, expected", [
    ("iphnoe", "iphone", 1), ("bicileta", "bicicleta", 1), ("abc", "abc", 0), ("abcd", "badc", 2),
    ("sofa", "sofas", 1), ("kitten", "sitting", 3), ("a", "abcd", 3),
])
def test_bounded_edit_distance_counts_a_transposition_as_one(a: str, b: str, expected: int) -> None:
    assert bounded_edit_distance(a, b, 2) == min(expected, 3)


# -- geo --------------------------------------------------------------------------------------------------------
def test_haversine_known_distances() -> None:
    assert haversine_km(40.4168, -3.7038, 41.3874, 2.1686) == pytest.approx(505, abs=2)  # Madrid - Barcelona
    assert haversine_km(0, 179.9, 0, -179.9) == pytest.approx(22.24, abs=0.01)
    assert haversine_km(52.0, 5.0, 52.0, 5.0) == 0


@pytest.mark.parametrize("lat, lon, radius", [(40.4, -3.7, 50), (0, 179.8, 100), (0, -179.9, 30), (89.9, 0, 50),
                                              (-60, 10, 500), (65, 20, 300)])
def test_bounding_boxes_contain_the_whole_circle(lat: float, lon: float, radius: float) -> None:
    boxes = bounding_boxes(lat, lon, radius)
    rng = random.Random(1)
    for _ in range(2000):  # random points inside the circle, including on its rim
        d = radius * math.sqrt(rng.random()) if rng.random() < 0.8 else radius * 0.999999
        bearing = rng.uniform(0, 2 * math.pi)
        angular = d / 6371.0087714
        p1, l1 = math.radians(lat), math.radians(lon)
        p2 = math.asin(math.sin(p1) * math.cos(angular) + math.cos(p1) * math.sin(angular) * math.cos(bearing))
        l2 = l1 + math.atan2(math.sin(bearing) * math.sin(angular) * math.cos(p1),
                             math.cos(angular) - math.sin(p1) * math.sin(p2))
        plat, plon = math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180
        assert any(a <= plat <= b and c <= plon <= d_ for a, b, c, d_ in boxes), (plat, plon)
    assert all(-90 <= a <= b <= 90 and -180 <= c <= d <= 180 for a, b, c, d in boxes)


def test_gauss_decay_matches_opensearch_definition() -> None:
    from handlers.search.tantivy_queries import gauss  # the embedded engine's decay; OpenSearch computes its own

    assert gauss(0.5, scale=10, offset=1, decay=0.5) == 1
    assert gauss(11, scale=10, offset=1, decay=0.5) == pytest.approx(0.5)
    assert gauss(-11, scale=10, offset=1, decay=0.5) == pytest.approx(0.5)
    assert gauss(21, scale=10, offset=1, decay=0.5) == pytest.approx(0.5 ** 4)
