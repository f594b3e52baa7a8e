"""The search domain as typed values: what is indexed, what is asked, what comes back.

* :class:`Ad` — a listing as search sees it, built from ``ItemListed`` and patched by ``ItemUpdated``
  (``event_types/ItemListed.yaml``; the shared taxonomy in ``event_types/_shared.yaml``).
* :class:`SearchRequest` / :class:`AutocompleteRequest` — every bound a client can get wrong is checked
  here, once, in ``__post_init__``, raising :class:`~handlers.search.errors.InvalidRequest` with the field
  and the reason; :meth:`SearchRequest.from_params` parses query-string values for the API. Backends can
  therefore trust any request they receive.
* :class:`SearchResponse` — hits with their distance, the exact total, facets (category counts, price
  ranges, distance rings), a did-you-mean and the cursor of the next page.

Paging is by cursor, search_after style: the cursor holds the sort values of the last hit, so page 500
costs what page 1 costs (an offset would make the engine collect and skip every earlier hit). A cursor
is bound to its query by a fingerprint: replaying it with other filters is refused instead of returning
a silently inconsistent page. It also pins the ``origin`` ("now") that relevance decays against, so
freshness scores do not drift between the pages of one listing.

Facet buckets are half-open ``[low, high)``, as OpenSearch's range and geo_distance aggregations count.
Prices are in the listing's own currency units (a language index is, in practice, one market's currency).
"""
from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Mapping

from handlers.search.errors import InvalidAd, InvalidRequest
from handlers.search.languages import SUPPORTED

# The taxonomy of event_types/_shared.yaml (a unit test keeps them in step).
CATEGORIES: tuple[str, ...] = (
    "cars", "motorbikes", "electronics", "phones", "computers", "home_garden", "furniture", "fashion", "baby_kids",
    "sports_leisure", "bikes", "books_music", "games_consoles", "real_estate", "jobs", "services", "other")
CATEGORY_CODE: dict[str, int] = {name: code for code, name in enumerate(CATEGORIES)}
CONDITIONS: tuple[str, ...] = ("new", "like_new", "good", "fair", "for_parts")
CURRENCIES: tuple[str, ...] = ("EUR", "GBP", "USD", "TRY")

MAX_QUERY_CHARS = 200
MAX_RADIUS_KM = 500.0
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_PRICE = 100_000_000.0
MAX_CURSOR_CHARS = 1024
MAX_AUTOCOMPLETE = 20
MAX_PREFIX_CHARS = 100

PRICE_EDGES: tuple[float, ...] = (50, 100, 250, 500, 1000, 5000)
DISTANCE_EDGES_KM: tuple[float, ...] = (1, 5, 10, 25, 50)


class Sort(str, enum.Enum):
    """Result orders. Every order ends with the item id, so equal values still page exactly once."""

    RELEVANCE = "relevance"  # text score x freshness decay (x distance decay given a point); no text, no point: newest
    DISTANCE = "distance"  # nearest first; needs lat/lon
    NEWEST = "newest"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"


def _finite(value: Any, name: str, *, error: type = InvalidRequest, item: str | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _error(error, item, name, f"{value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise _error(error, item, name, f"{value!r} is not a finite number")
    return number


def _error(error: type, item: str | None, name: str, reason: str) -> Exception:
    return error(item, name, reason) if error is InvalidAd else error(name, reason)


def _epoch(value: Any, item: str | None) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidAd(item, "listed_at", "a datetime needs a time zone")
        return value.timestamp()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidAd(item, "listed_at", f"{value!r} is not an ISO-8601 timestamp") from None
        return _epoch(parsed, item)
    return _finite(value, "listed_at", error=InvalidAd, item=item)


# -- what is indexed ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ad:
    """A listing as search sees it. ``listed_at`` accepts epoch seconds, an aware datetime or ISO-8601."""

    item_id: str
    title: str
    category: str
    price: float
    currency: str
    lat: float
    lon: float
    country: str
    language: str
    listed_at: float
    seller_id: str = ""
    description: str = ""
    condition: str | None = None
    city: str | None = None
    image_count: int = 0
    shipping_available: bool | None = None

    def __post_init__(self) -> None:
        item = self.item_id if isinstance(self.item_id, str) and self.item_id else None
        if not item or len(item) > 64:
            raise InvalidAd(item, "item_id", "must be 1 to 64 characters")
        if not isinstance(self.title, str) or not self.title.strip():
            raise InvalidAd(item, "title", "must be a non-empty string")
        if self.category not in CATEGORY_CODE:
            raise InvalidAd(item, "category", f"{self.category!r} is not a category")
        price = _finite(self.price, "price", error=InvalidAd, item=item)
        if not 0 <= price <= MAX_PRICE:
            raise InvalidAd(item, "price", f"{price} is outside [0, {MAX_PRICE:.0f}]")
        lat = _finite(self.lat, "lat", error=InvalidAd, item=item)
        lon = _finite(self.lon, "lon", error=InvalidAd, item=item)
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidAd(item, "location", f"({lat}, {lon}) is not a valid lat/lon")
        if not isinstance(self.language, str) or not self.language:
            raise InvalidAd(item, "language", "is required")
        object.__setattr__(self, "price", price)
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        object.__setattr__(self, "listed_at", _epoch(self.listed_at, item))
        object.__setattr__(self, "image_count", int(self.image_count or 0))
        object.__setattr__(self, "description", self.description or "")

    @classmethod
    def from_item_listed(cls, properties: Mapping[str, Any], timestamp: Any) -> "Ad":
        """From a validated ItemListed event's properties and its timestamp."""
        location = properties.get("location") or {}
        try:
            return cls(item_id=properties["item_id"], title=properties["title"], category=properties["category"],
                       price=properties["price"], currency=properties["currency"], lat=location.get("lat"),
                       lon=location.get("lon"), country=properties["country"], language=properties["language"],
                       listed_at=timestamp, seller_id=properties.get("seller_id", ""),
                       description=properties.get("description", ""), condition=properties.get("condition"),
                       city=properties.get("city"), image_count=properties.get("image_count") or 0,
                       shipping_available=properties.get("shipping_available"))
        except KeyError as missing:
            raise InvalidAd(properties.get("item_id"), str(missing.args[0]), "is required") from None

    def updated(self, properties: Mapping[str, Any]) -> "Ad":
        """This listing with an ItemUpdated event's changed fields applied (only changed fields are sent)."""
        changes = {k: v for k, v in properties.items()
                   if k in {"title", "description", "category", "price", "currency", "condition", "city", "country",
                            "language", "image_count"}}
        if "location" in properties:
            changes["lat"], changes["lon"] = properties["location"]["lat"], properties["location"]["lon"]
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        # every field is a plain value: a shallow read, not dataclasses.asdict's recursive deep copy (which was
        # most of the indexing time)
        return {name: getattr(self, name) for name in _AD_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Ad":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


_AD_FIELDS = tuple(Ad.__dataclass_fields__)


# -- what is asked -----------------------------------------------------------------------------------------
def _check_point(lat: float | None, lon: float | None) -> tuple[float | None, float | None]:
    if (lat is None) != (lon is None):
        raise InvalidRequest("lat" if lat is None else "lon", "lat and lon go together")
    if lat is None:
        return None, None
    lat, lon = _finite(lat, "lat"), _finite(lon, "lon")
    if not -90 <= lat <= 90:
        raise InvalidRequest("lat", f"{lat} is outside [-90, 90]")
    if not -180 <= lon <= 180:
        raise InvalidRequest("lon", f"{lon} is outside [-180, 180]")
    return lat, lon


def _check_language(language: str) -> None:
    if language not in SUPPORTED:
        raise InvalidRequest("language", f"{language!r} is not one of {', '.join(SUPPORTED)} "
                                         "(route with handlers.search.languages.choose_language)")


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One search, validated on construction. ``language`` is the index to search (already routed)."""

    language: str
    text: str = ""
    lat: float | None = None
    lon: float | None = None
    radius_km: float | None = None
    categories: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    sort: Sort = Sort.RELEVANCE
    page_size: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None
    country: str | None = None  # only listings of this country (ISO 3166-1 alpha-2): the place, when no radius
    fuzzy: bool = True  # typo fallback when exact matching finds little (handlers/search/backend.py); off = exact only

    def __post_init__(self) -> None:
        _check_language(self.language)
        text = " ".join(str(self.text or "").split())
        if len(text) > MAX_QUERY_CHARS:
            raise InvalidRequest("q", f"{len(text)} characters; at most {MAX_QUERY_CHARS}")
        object.__setattr__(self, "text", text)
        lat, lon = _check_point(self.lat, self.lon)
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        if self.radius_km is not None:
            radius = _finite(self.radius_km, "radius_km")
            if lat is None:
                raise InvalidRequest("radius_km", "needs lat and lon")
            if not 0 < radius <= MAX_RADIUS_KM:
                raise InvalidRequest("radius_km", f"{radius} is outside (0, {MAX_RADIUS_KM:.0f}] km")
            object.__setattr__(self, "radius_km", radius)
        categories = tuple(sorted(set(self.categories)))
        for category in categories:
            if category not in CATEGORY_CODE:
                raise InvalidRequest("category", f"{category!r} is not a category")
        object.__setattr__(self, "categories", categories)
        for name in ("price_min", "price_max"):
            value = getattr(self, name)
            if value is not None:
                value = _finite(value, name)
                if not 0 <= value <= MAX_PRICE:
                    raise InvalidRequest(name, f"{value} is outside [0, {MAX_PRICE:.0f}]")
                object.__setattr__(self, name, value)
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise InvalidRequest("price_min", f"{self.price_min} is above price_max {self.price_max}")
        try:
            sort = Sort(self.sort)
        except ValueError:
            raise InvalidRequest("sort", f"{self.sort!r} is not one of {', '.join(s.value for s in Sort)}") from None
        if sort is Sort.DISTANCE and lat is None:
            raise InvalidRequest("sort", "distance needs lat and lon")
        object.__setattr__(self, "sort", sort)
        if isinstance(self.page_size, bool) or not isinstance(self.page_size, int) \
                or not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise InvalidRequest("page_size", f"{self.page_size!r} is outside 1..{MAX_PAGE_SIZE}")
        if self.cursor is not None and (not isinstance(self.cursor, str)
                                        or not 0 < len(self.cursor) <= MAX_CURSOR_CHARS):
            raise InvalidRequest("cursor", "malformed cursor")
        if self.country is not None:
            if not isinstance(self.country, str) or len(self.country) != 2 or not self.country.isalpha():
                raise InvalidRequest("country", f"{self.country!r} is not a two-letter country code")
            object.__setattr__(self, "country", self.country.upper())

    @property
    def has_point(self) -> bool:
        return self.lat is not None

    @property
    def effective_sort(self) -> Sort:
        """Relevance with neither text nor point has only freshness to go by: that is newest first."""
        if self.sort is Sort.RELEVANCE and not self.text and not self.has_point:
            return Sort.NEWEST
        return self.sort

    def fingerprint(self, backend: str) -> str:
        """What a cursor is bound to: the backend and everything that decides the result set and its order."""
        key = [backend, self.language, self.text, self.fuzzy, self.lat, self.lon, self.radius_km,
               list(self.categories), self.price_min, self.price_max, self.sort.value]
        if self.country is not None:  # (left out when unset: cursors made before the field stay valid)
            key.append(self.country)
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    @classmethod
    def from_params(cls, params: Mapping[str, Any], language: str) -> "SearchRequest":
        """From query-string values (a dict or Werkzeug MultiDict): q, lat, lon, radius_km, category
        (repeated or comma-separated), price_min, price_max, sort, page_size, cursor, fuzzy. (``country`` is the
        API's: a routing signal and, through the place it names, a filter — see handlers.search.api.)"""

        def one(name: str) -> str | None:
            value = params.get(name)
            return None if value is None or str(value).strip() == "" else str(value).strip()

        def number(name: str) -> float | None:
            value = one(name)
            return None if value is None else _finite(value, name)

        raw_categories = params.getlist("category") if hasattr(params, "getlist") else [params.get("category")]
        categories = tuple(c.strip() for value in raw_categories if value for c in str(value).split(",") if c.strip())
        page_size = one("page_size")
        try:
            size = int(page_size) if page_size is not None else DEFAULT_PAGE_SIZE
        except ValueError:
            raise InvalidRequest("page_size", f"{page_size!r} is not an integer") from None
        fuzzy = (one("fuzzy") or "true").lower()
        if fuzzy not in {"true", "false", "1", "0"}:
            raise InvalidRequest("fuzzy", f"{fuzzy!r} is not true or false")
        return cls(language=language, text=params.get("q") or "", lat=number("lat"), lon=number("lon"),
                   radius_km=number("radius_km"), categories=categories, price_min=number("price_min"),
                   price_max=number("price_max"), sort=one("sort") or Sort.RELEVANCE, page_size=size,
                   cursor=one("cursor"), fuzzy=fuzzy in {"true", "1"})


@dataclass(frozen=True, slots=True)
class AutocompleteRequest:
    """Completions of what the user is typing; titles of matching listings, nearest first when lat/lon given."""

    prefix: str
    language: str
    limit: int = 10
    lat: float | None = None
    lon: float | None = None

    def __post_init__(self) -> None:
        _check_language(self.language)
        prefix = " ".join(str(self.prefix or "").split()) + (" " if str(self.prefix or "").endswith(" ") else "")
        if not prefix.strip():
            raise InvalidRequest("prefix", "is empty")
        if len(prefix) > MAX_PREFIX_CHARS:
            raise InvalidRequest("prefix", f"{len(prefix)} characters; at most {MAX_PREFIX_CHARS}")
        object.__setattr__(self, "prefix", prefix)
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_AUTOCOMPLETE:
            raise InvalidRequest("limit", f"{self.limit!r} is outside 1..{MAX_AUTOCOMPLETE}")
        lat, lon = _check_point(self.lat, self.lon)
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)


# -- what comes back ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Hit:
    ad: Ad
    distance_km: float | None = None  # from the request's point, when it has one
    score: float | None = None  # relevance sort only; comparable within one response
    approximate: bool = False  # found through a corrected spelling only (the typo fallback): after every exact hit

    def to_dict(self) -> dict[str, Any]:
        return {**self.ad.to_dict(), "distance_km": self.distance_km, "score": self.score,
                "approximate": self.approximate}


@dataclass(frozen=True, slots=True)
class Bucket:
    """One facet value: a category (``low``/``high`` None) or a ``[low, high)`` range (``high`` None = open)."""

    key: str
    count: int
    low: float | None = None
    high: float | None = None


def range_keys(edges: tuple[float, ...]) -> list[tuple[str, float, float | None]]:
    """``(key, low, high)`` of the half-open buckets a tuple of edges makes, starting at 0."""
    bounds = (0, *edges)
    out = [(f"{lo:g}-{hi:g}", float(lo), float(hi)) for lo, hi in zip(bounds, edges)]
    return out + [(f"{edges[-1]:g}-*", float(edges[-1]), None)]


@dataclass(frozen=True, slots=True)
class Facets:
    categories: tuple[Bucket, ...] = ()  # count desc, then name; categories with no match left out
    price_ranges: tuple[Bucket, ...] = ()  # every range of PRICE_EDGES, zeros included
    distance_rings: tuple[Bucket, ...] = ()  # every ring of DISTANCE_EDGES_KM; only when lat/lon given

    @staticmethod
    def build(category_counts: Mapping[str, int], price_counts: list[int],
              ring_counts: list[int] | None) -> "Facets":
        categories = tuple(Bucket(name, count) for name, count in
                           sorted(category_counts.items(), key=lambda kv: (-kv[1], kv[0])) if count > 0)
        prices = tuple(Bucket(key, count, lo, hi)
                       for (key, lo, hi), count in zip(range_keys(PRICE_EDGES), price_counts))
        rings = () if ring_counts is None else tuple(
            Bucket(key, count, lo, hi) for (key, lo, hi), count in zip(range_keys(DISTANCE_EDGES_KM), ring_counts))
        return Facets(categories, prices, rings)

    def to_dict(self) -> dict[str, Any]:
        return {name: [asdict(b) for b in getattr(self, name)] for name in ("categories", "price_ranges",
                                                                              "distance_rings")}


@dataclass(frozen=True, slots=True)
class SearchResponse:
    language: str
    hits: tuple[Hit, ...]
    total: int  # every match, exactly (not just this page)
    facets: Facets = field(default_factory=Facets)
    did_you_mean: str | None = None  # the query with unknown words replaced by the closest indexed ones
    next_cursor: str | None = None  # None on the last page
    approximate: int = 0  # of ``total``, the matches found only through a corrected spelling (after the exact ones)

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language, "total": self.total, "approximate": self.approximate,
                "hits": [h.to_dict() for h in self.hits], "facets": self.facets.to_dict(),
                "did_you_mean": self.did_you_mean, "next_cursor": self.next_cursor}


@dataclass(frozen=True, slots=True)
class Suggestion:
    text: str  # a listing title that completes the prefix
    item_id: str  # the listing it came from (a client may open it directly)
    distance_km: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the cursor --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: the sort values of the last hit (backend-specific) and the ranking origin."""

    after: tuple[Any, ...]
    origin: float
    fuzzy: bool = False  # the page came from the typo fallback (exact and approximate matches, in that order)

    def encode(self, request: SearchRequest, backend: str) -> str:
        body = {"a": list(self.after), "o": self.origin, "f": request.fingerprint(backend), "z": int(self.fuzzy)}
        return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")

    @staticmethod
    def decode(request: SearchRequest, backend: str) -> "Cursor | None":
        if request.cursor is None:
            return None
        token = request.cursor
        try:
            body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            after, origin, fingerprint = tuple(body["a"]), float(body["o"]), body["f"]
            fuzzy = bool(int(body.get("z", 0)))
        except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError):
            raise InvalidRequest("cursor", "malformed cursor") from None
        if fingerprint != request.fingerprint(backend):
            raise InvalidRequest("cursor", "the cursor belongs to another query (same filters and sort, or none)")
        return Cursor(after, origin, fuzzy)
