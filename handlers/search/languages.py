"""Which language index serves a request, and which one a listing goes to. Pure functions.

There is one index per language because stemming, stop words and spelling are per language: searching
Dutch listings with a Spanish stemmer finds nothing useful. The markets are ES, NL, GB, TR and PT, so the
supported languages are es, nl, en, tr and pt.

A search request is routed by the first signal present, in this order:

1. an explicit ``language`` parameter of the request;
2. **the place the buyer searches in**: the country of the request's point (``lat``/``lon`` within reach of a
   market's cities, :func:`country_at`), else the request's ``country`` — its market's language;
3. the language the user selected in the app (their profile setting);
4. the ``Accept-Language`` header, best q-value first (``es-ES`` counts as ``es``; ``q=0`` means "not this");
5. the API's default country (:attr:`~handlers.search.api.ApiConfig.default_country`).

Why the place before the phone: a buyer searches the ads of the place they are in, and those are written in
that place's language. An English phone in Madrid asking for "bicicleta" used to get the English index and
nothing; the phone's language is a weaker signal than where the buyer is. (When the chosen index has nothing
and another index has matches at that place, the API says so: :mod:`handlers.search.hints`.)

A signal naming a language we do not support (say ``fr``) is not silently skipped: the request falls back to
the place's language, else the default country's, else English, and the choice says so (``reason = fallback``,
``requested = "fr"``). The Accept-Language header is a list of preferences, so it only falls back when *none*
of its languages is supported. With no signal at all: English, reason fallback.

The API returns :meth:`LanguageChoice.to_dict` with every response, so a client can tell why it got, for
example, Spanish results for an English phone in Madrid.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

SUPPORTED: tuple[str, ...] = ("es", "nl", "en", "tr", "pt")
FALLBACK_LANGUAGE = "en"

# Default language of each market (mirrors letgo.traffic.MARKETS; a unit test keeps them in step).
COUNTRY_LANGUAGE: dict[str, str] = {"ES": "es", "NL": "nl", "GB": "en", "TR": "tr", "PT": "pt"}
# Where the markets are: their main cities (a unit test checks the traffic generator's cities are among them). A
# point belongs to the market of the nearest one within PLACE_REACH_KM — coarse near borders, right for a city.
MARKET_CITIES: tuple[tuple[str, float, float], ...] = (
    ("ES", 40.4168, -3.7038), ("ES", 41.3874, 2.1686), ("ES", 39.4699, -0.3763), ("ES", 37.3891, -5.9845),
    ("ES", 43.2630, -2.9350), ("ES", 43.3623, -8.4115), ("ES", 36.7213, -4.4214), ("ES", 41.6488, -0.8891),
    ("ES", 39.5696, 2.6502), ("ES", 28.1235, -15.4363), ("ES", 38.8794, -6.9707), ("ES", 42.5987, -5.5671),
    ("PT", 38.7223, -9.1393), ("PT", 41.1579, -8.6291), ("PT", 37.0194, -7.9304), ("PT", 40.2033, -8.4103),
    ("NL", 52.3676, 4.9041), ("NL", 51.9244, 4.4777), ("NL", 52.0907, 5.1214), ("NL", 53.2194, 6.5665),
    ("NL", 51.4416, 5.4697), ("NL", 51.8126, 5.8372),
    ("GB", 51.5072, -0.1276), ("GB", 53.4808, -2.2426), ("GB", 52.4862, -1.8904), ("GB", 55.8642, -4.2518),
    ("GB", 55.9533, -3.1883), ("GB", 51.4545, -2.5879), ("GB", 54.5973, -5.9301), ("GB", 54.9783, -1.6178),
    ("TR", 41.0082, 28.9784), ("TR", 39.9334, 32.8597), ("TR", 38.4237, 27.1428), ("TR", 36.8969, 30.7133),
    ("TR", 37.0000, 35.3213), ("TR", 41.0027, 39.7168), ("TR", 37.9100, 40.2400), ("TR", 38.7205, 35.4826),
)
PLACE_REACH_KM = 250.0

_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")
_QVALUE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")


class Reason(str, enum.Enum):
    """Why a language was chosen (stable strings: clients and dashboards read them)."""

    EXPLICIT = "explicit"  # the request's language parameter
    POINT = "point"  # the language of the market the request's lat/lon is in
    COUNTRY = "country"  # the language of the request's country (or the API's default country: source says which)
    USER = "user"  # the language selected in the app
    ACCEPT_LANGUAGE = "accept_language"  # the Accept-Language header
    FALLBACK = "fallback"  # an unsupported language was asked for, or there was no signal


@dataclass(frozen=True, slots=True)
class LanguageChoice:
    """The language index a request searches, why, and what was asked for if we could not honour it."""

    language: str
    reason: Reason
    requested: str | None = None  # the unsupported language that triggered a fallback
    source: str | None = None  # which signal asked for it: explicit, point, country, user, accept_language,
    #                            default_country
    country: str | None = None  # the market of the place the buyer searches in (point, else country), if known

    def to_dict(self) -> dict[str, str | None]:
        return {"language": self.language, "reason": self.reason.value, "requested": self.requested,
                "source": self.source, "country": self.country}


def primary_subtag(tag: str | None) -> str | None:
    """``"es-ES"`` -> ``"es"``, ``"PT_br"`` -> ``"pt"``; None for an empty or malformed tag."""
    if tag is None:
        return None
    tag = tag.strip()
    if not tag or not _TAG.match(tag):
        return None
    return re.split(r"[-_]", tag, maxsplit=1)[0].lower()


def parse_accept_language(header: str | None) -> list[tuple[str, float]]:
    """The header's languages as (primary subtag, q), best first; equal q keeps header order.

    Malformed entries and ``*`` are skipped rather than failing the request: browsers and SDKs send odd
    headers, and the header is only a hint. ``q=0`` entries are dropped (RFC 9110: "not acceptable").
    """
    if not header:
        return []
    entries: list[tuple[str, float, int]] = []
    for position, part in enumerate(header.split(",")):
        fields = [f.strip() for f in part.split(";")]
        tag, q = fields[0], 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.match(value) else -1.0
        language = None if tag == "*" else primary_subtag(tag)
        if language and q > 0:
            entries.append((language, q, position))
    entries.sort(key=lambda e: (-e[1], e[2]))
    seen: set[str] = set()
    result = []
    for language, q, _ in entries:
        if language not in seen:
            seen.add(language)
            result.append((language, q))
    return result


def country_language(country: str | None) -> str | None:
    return COUNTRY_LANGUAGE.get((country or "").strip().upper())


def country_at(lat: float | None, lon: float | None) -> str | None:
    """The market a point is in: the country of the nearest market city within PLACE_REACH_KM, else None."""
    if lat is None or lon is None:
        return None
    from handlers.search.geo import haversine_km

    distance, country = min((haversine_km(lat, lon, c_lat, c_lon), c) for c, c_lat, c_lon in MARKET_CITIES)
    return country if distance <= PLACE_REACH_KM else None


def choose_language(explicit: str | None = None, user: str | None = None, accept_language: str | None = None,
                    country: str | None = None, *, lat: float | None = None, lon: float | None = None,
                    default_country: str | None = None) -> LanguageChoice:
    """Route a search request to a language index (see the module docstring for the rules)."""
    at_point = country_at(lat, lon)
    named = (country or "").strip().upper() or None
    place = at_point or (named if country_language(named) else None)
    fallback_country = place or (default_country or "").strip().upper() or None

    def fallback(requested: str, source: str) -> LanguageChoice:
        return LanguageChoice(country_language(fallback_country) or FALLBACK_LANGUAGE, Reason.FALLBACK, requested,
                              source, place)

    if explicit is not None and explicit.strip():
        language = primary_subtag(explicit)
        if language in SUPPORTED:
            return LanguageChoice(language, Reason.EXPLICIT, None, "explicit", place)
        return fallback(explicit.strip(), "explicit")
    if at_point:
        return LanguageChoice(COUNTRY_LANGUAGE[at_point], Reason.POINT, None, "point", place)
    if place:
        return LanguageChoice(COUNTRY_LANGUAGE[place], Reason.COUNTRY, None, "country", place)
    if user is not None and user.strip():
        language = primary_subtag(user)
        if language in SUPPORTED:
            return LanguageChoice(language, Reason.USER, None, "user", place)
        return fallback(user.strip(), "user")
    preferences = parse_accept_language(accept_language)
    for language, _ in preferences:
        if language in SUPPORTED:
            return LanguageChoice(language, Reason.ACCEPT_LANGUAGE, None, "accept_language", place)
    if preferences:
        return fallback(preferences[0][0], "accept_language")
    language = country_language(default_country)
    if language:
        return LanguageChoice(language, Reason.COUNTRY, None, "default_country", place)
    return LanguageChoice(FALLBACK_LANGUAGE, Reason.FALLBACK, None, None, place)


def index_language(language: str | None, country: str | None) -> str:
    """The language index a listing goes to: its own language if supported, else its country's, else English.

    ItemListed allows fr, it and de too (the app's UI languages); such listings still belong to a market, so
    they are searchable in that market's index rather than dropped.
    """
    language = primary_subtag(language)
    if language in SUPPORTED:
        return language
    return country_language(country) or FALLBACK_LANGUAGE
