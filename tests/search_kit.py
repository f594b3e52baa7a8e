"""A deterministic corpus of listings for the search tests, and brute-force answers to check engines against.

The corpus comes from the same marketplace as the traffic generator (``letgo.traffic``: its TEMPLATES give
titles per language, its MARKETS the cities, currencies and languages), seeded, so a failure replays
exactly. Listings are spread around each city (a few metres to ~200 km, so every distance ring and both
sides of any radius are populated); some prices sit exactly on facet edges and some listings share a price
or a listing time, so half-open buckets and the cursor's tie-breaking are exercised.

Every expectation the contract tests use is computed here from the corpus with plain Python — a separate
haversine, plain loops — never hard-coded and never asked of the engine under test.
"""
from __future__ import annotations

import bisect
import math
import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Iterable

from handlers.search.languages import index_language
from handlers.search.model import DISTANCE_EDGES_KM, PRICE_EDGES, Ad, SearchRequest
from letgo.traffic import DESCRIPTIONS, MARKETS, TEMPLATES

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc).timestamp()
SEED = 20261126
PER_MARKET = {"ES": 110, "NL": 60, "GB": 40, "TR": 30, "PT": 30}
CONDITIONS = ("new", "like_new", "good", "fair", "for_parts")
MADRID = (40.4168, -3.7038)
AMSTERDAM = (52.3676, 4.9041)
_R_KM = 6371.0087714  # the mean Earth radius OpenSearch (Lucene) measures with


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine written out here on purpose: the expectation must not share code with the engines."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((phi2 - phi1) / 2) ** 2
         + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * _R_KM * math.asin(min(1.0, math.sqrt(a)))


def _offset(lat: float, lon: float, km: float, bearing: float) -> tuple[float, float]:
    dlat = km / 111.2 * math.cos(bearing)
    dlon = km / (111.2 * math.cos(math.radians(lat))) * math.sin(bearing)
    return round(lat + dlat, 6), round(lon + dlon, 6)


def build_corpus(seed: int = SEED, per_market: dict[str, int] | None = None) -> list[Ad]:
    rng = random.Random(seed)
    ads: list[Ad] = []
    for market in MARKETS:
        for i in range((per_market or PER_MARKET)[market.country]):
            template = TEMPLATES[i % len(TEMPLATES)]  # every template in every market
            brand = rng.choice(template.brands)
            city, city_lat, city_lon = market.cities[(i // len(TEMPLATES)) % len(market.cities)]
            km = rng.choice((rng.expovariate(1 / 2.5), rng.uniform(0, 30), rng.uniform(30, 200)))
            lat, lon = _offset(city_lat, city_lon, km, rng.uniform(0, 2 * math.pi))
            low, high = template.price_eur
            price = round(rng.uniform(low, high) * market.eur_rate, 2)
            if i % 11 == 0:
                price = float(rng.choice(PRICE_EDGES))  # exactly on a facet edge
            if i % 13 == 0:
                price = 199.0  # a tie shared by several listings
            listed_at = float(int(NOW - rng.uniform(0, 90 * 86400)))
            if i % 17 == 0:
                listed_at = NOW - 86400 * 3  # another tie
            ads.append(Ad(
                item_id=f"{market.country.lower()}-{i:04d}", title=template.titles[market.language].format(brand=brand),
                category=template.category, price=price, currency=market.currency, lat=lat, lon=lon,
                country=market.country, language=market.language, listed_at=listed_at,
                seller_id=f"u-{market.country.lower()}-{rng.randrange(1000):03d}",
                description=" ".join(rng.sample(DESCRIPTIONS[market.language], 2)),
                condition=rng.choice(CONDITIONS), city=city, image_count=rng.randrange(0, 12),
                shipping_available=rng.random() < 0.3))
    # Listings in a UI language without its own index are searched in their market's index.
    ads.append(replace(ads[0], item_id="es-fr-0001", language="fr",
                       title="Bicicleta de montaña Orbea (anuncio en francés)"))
    return ads + relevance_ads(ads)


# Titles the relevance cases need beside the templates' (issue 13): a word that exists next to a near one
# (casco / Casio), a misspelling in a description only (an exact match of "bicileta", which no title has),
# Dutch compounds and words that only look like them.
MISSPELT_DESCRIPTION = "Regalo una bicileta vieja."
RELEVANCE_TITLES = {
    "es": ["Casco de moto Shoei", "Casco de bici Abus", "Casco integral LS2", "Patinete eléctrico Xiaomi"],
    "nl": ["Kinderfiets 20 inch", "Kinderfiets Alpina", "Fiets Batavus", "Racefiets Trek", "Damesfiets Gazelle",
           "Fietstas Ortlieb", "Fietsenrek voor 3", "Hoekbank leer", "Hoekbankje grijs", "Bank velours",
           "Bankstel 3+2", "Kledingkast wit"],
}


def relevance_ads(base: list[Ad]) -> list[Ad]:
    madrid = next(ad for ad in base if ad.country == "ES")  # an English listing in Madrid: the English index
    out = [replace(madrid, item_id="es-en-0001", language="en", title="Trek mountain bike, English ad in Madrid")]
    for language, titles in RELEVANCE_TITLES.items():
        first = next(ad for ad in base if ad.language == language)
        for n, title in enumerate(titles):
            special = title.startswith("Patinete")  # the expensive one whose description is misspelt
            out.append(replace(first, item_id=f"{language}-rel-{n:02d}", title=title,
                               price=5000.0 if special else 40.0 + 10 * n, category="sports_leisure",
                               description=MISSPELT_DESCRIPTION if special else first.description,
                               listed_at=first.listed_at - 3600 * (n + 1)))
    return out


CORPUS: list[Ad] = build_corpus()


def in_language(ads: Iterable[Ad], language: str) -> list[Ad]:
    return [ad for ad in ads if index_language(ad.language, ad.country) == language]


def matches_filters(ad: Ad, request: SearchRequest) -> bool:
    """The non-text part of a request, brute force."""
    if request.categories and ad.category not in request.categories:
        return False
    if request.price_min is not None and ad.price < request.price_min:
        return False
    if request.price_max is not None and ad.price > request.price_max:
        return False
    if request.radius_km is not None and distance_km(request.lat, request.lon, ad.lat, ad.lon) > request.radius_km:
        return False
    return True


def expected_matches(request: SearchRequest, ads: Iterable[Ad] = CORPUS,
                     text: Callable[[Ad], bool] | None = None) -> list[Ad]:
    """Listings a request must return: its language index, its filters and (optionally) a text predicate."""
    return [ad for ad in in_language(ads, request.language)
            if matches_filters(ad, request) and (text is None or text(ad))]


def _bucket(edges: tuple[float, ...], value: float) -> int:
    return bisect.bisect_right(edges, value)  # half-open [low, high), as OpenSearch's range aggregations


def expected_facets(ads: list[Ad], point: tuple[float, float] | None) -> dict[str, object]:
    categories = Counter(ad.category for ad in ads)
    prices = [0] * (len(PRICE_EDGES) + 1)
    for ad in ads:
        prices[_bucket(PRICE_EDGES, ad.price)] += 1
    rings = None
    if point is not None:
        rings = [0] * (len(DISTANCE_EDGES_KM) + 1)
        for ad in ads:
            rings[_bucket(DISTANCE_EDGES_KM, distance_km(point[0], point[1], ad.lat, ad.lon))] += 1
    return {"categories": dict(categories), "prices": prices, "rings": rings}


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"\W+", text.casefold()) if w}


def title_word(*words: str) -> Callable[[Ad], bool]:
    """True for listings whose title has one of these words (whole words, case-insensitive)."""
    wanted = {w.casefold() for w in words}
    return lambda ad: bool(_words(ad.title) & wanted)


def text_word(*words: str) -> Callable[[Ad], bool]:
    """True for listings whose title or description has one of these words."""
    wanted = {w.casefold() for w in words}
    return lambda ad: bool((_words(ad.title) | _words(ad.description)) & wanted)


def title_word_prefix(*prefixes: str) -> Callable[[str], bool]:
    """True for titles where, for every prefix in order, some word starts with it (autocomplete, brute force)."""
    folded = [p.casefold() for p in prefixes]
    return lambda title: all(any(_fold(w).startswith(_fold(p)) for w in _words(title)) for p in folded)


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


# -- listing histories: the order-independence property ----------------------------------------------------------
@dataclass(frozen=True)
class StreamEvent:
    """A validated listing event as the indexer receives it from the tracking core."""

    type: str
    timestamp: str
    message_id: str
    properties: dict
    sequence_number: str = "0"


def iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def listed_properties(item_id: str, title: str, price: float, language: str = "es") -> dict:
    country = {"es": "ES", "nl": "NL", "en": "GB"}[language]
    city = {"es": MADRID, "nl": AMSTERDAM, "en": (51.5072, -0.1276)}[language]
    return {"item_id": item_id, "seller_id": "u-1", "title": title, "category": "bikes", "price": price,
            "currency": "EUR", "location": {"lat": city[0], "lon": city[1]}, "country": country,
            "language": language, "description": "", "condition": "good"}


def event_time_fold(events: Iterable[StreamEvent]) -> dict[str, Ad]:
    """Brute force, independent of the indexer: apply the events one by one in version order (timestamp, then the
    messageId tie-break), the way a single ordered stream would — updates to a listing not live are ignored."""
    from handlers.search.listings import event_version

    ads: dict[str, Ad] = {}
    live: set[str] = set()
    for event in sorted(events, key=lambda e: event_version(e.timestamp, e.message_id)):
        item = event.properties["item_id"]
        if event.type == "ItemListed":
            ads[item] = Ad.from_item_listed(event.properties, event.timestamp)
            live.add(item)
        elif event.type == "ItemUpdated":
            if item in live:
                ads[item] = ads[item].updated(event.properties)
        else:
            live.discard(item)
    return {item: ads[item] for item in live}


def edit_distance(a: str, b: str) -> int:
    """Levenshtein with adjacent transpositions, written out here (the engines' own is not used for expectations)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def title_words(ads: Iterable[Ad]) -> set[str]:
    return {_fold(w) for ad in ads for w in _words(ad.title)}


def title_word_ending(*endings: str) -> Callable[[Ad], bool]:
    """True for titles with a word that is, or ends in, one of these (a Dutch compound's head), brute force."""
    folded = tuple(e.casefold() for e in endings)
    return lambda ad: any(w.endswith(folded) for w in _words(ad.title))
