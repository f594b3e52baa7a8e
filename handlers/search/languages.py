"""Which language index serves a request, and which one a listing goes to. Pure functions.

There is one index per language because stemming, stop words and spelling are per language: searching
Dutch listings with a Spanish stemmer finds nothing useful. The markets are ES, NL, GB, TR and PT, so the
supported languages are es, nl, en, tr and pt.

A search request is routed by the first signal present, in this order:

1. an explicit ``language`` parameter of the request;
2. the language the user selected in the app (their profile setting);
3. the ``Accept-Language`` header, best q-value first (``es-ES`` counts as ``es``; ``q=0`` means "not this");
4. the default language of the user's country.

A signal naming a language we do not support (say ``fr``) is not silently skipped: the request falls back to
the country's default language when the country is one of our markets, else English, and the choice says so
(``reason = fallback``, ``requested = "fr"``). The Accept-Language header is a list of preferences, so it
only falls back when *none* of its languages is supported. With no signal at all: English, reason fallback.

The API returns :meth:`LanguageChoice.to_dict` with every response, so a client can tell why it got, for
example, Spanish results for a French phone in Madrid.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

SUPPORTED: tuple[str, ...] = ("es", "nl", "en", "tr", "pt")
FALLBACK_LANGUAGE = "en"

# Default language of each market (mirrors letgo.traffic.MARKETS; a unit test keeps them in step).
COUNTRY_LANGUAGE: dict[str, str] = {"ES": "es", "NL": "nl", "GB": "en", "TR": "tr", "PT": "pt"}

_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")
_QVALUE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")


class Reason(str, enum.Enum):
    """Why a language was chosen (stable strings: clients and dashboards read them)."""

    EXPLICIT = "explicit"  # the request's language parameter
    USER = "user"  # the language selected in the app
    ACCEPT_LANGUAGE = "accept_language"  # the Accept-Language header
    COUNTRY = "country"  # the default language of the user's country
    FALLBACK = "fallback"  # an unsupported language was asked for, or there was no signal


@dataclass(frozen=True, slots=True)
class LanguageChoice:
    """The language index a request searches, why, and what was asked for if we could not honour it."""

    language: str
    reason: Reason
    requested: str | None = None  # the unsupported language that triggered a fallback
    source: str | None = None  # which signal asked for it: explicit, user, accept_language

    def to_dict(self) -> dict[str, str | None]:
        return {"language": self.language, "reason": self.reason.value, "requested": self.requested,
                "source": self.source}


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


def _fallback(country: str | None, requested: str, source: str) -> LanguageChoice:
    return LanguageChoice(country_language(country) or FALLBACK_LANGUAGE, Reason.FALLBACK, requested, source)


def choose_language(explicit: str | None = None, user: str | None = None, accept_language: str | None = None,
                    country: str | None = None) -> LanguageChoice:
    """Route a search request to a language index (see the module docstring for the rules)."""
    for source, value, reason in (("explicit", explicit, Reason.EXPLICIT), ("user", user, Reason.USER)):
        if value is not None and value.strip():
            language = primary_subtag(value)
            if language in SUPPORTED:
                return LanguageChoice(language, reason, None, source)
            return _fallback(country, value.strip(), source)
    preferences = parse_accept_language(accept_language)
    for language, _ in preferences:
        if language in SUPPORTED:
            return LanguageChoice(language, Reason.ACCEPT_LANGUAGE, None, "accept_language")
    if preferences:
        return _fallback(country, preferences[0][0], "accept_language")
    language = country_language(country)
    if language:
        return LanguageChoice(language, Reason.COUNTRY, None, "country")
    return LanguageChoice(FALLBACK_LANGUAGE, Reason.FALLBACK, None, None)


def index_language(language: str | None, country: str | None) -> str:
    """The language index a listing goes to: its own language if supported, else its country's, else English.

    ItemListed allows fr, it and de too (the app's UI languages); such listings still belong to a market, so
    they are searchable in that market's index rather than dropped.
    """
    language = primary_subtag(language)
    if language in SUPPORTED:
        return language
    return country_language(country) or FALLBACK_LANGUAGE
