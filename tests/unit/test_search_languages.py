"""Language routing of search requests and listings: explicit > the place (point, country) > user > Accept-Language >
default country, with a stated fallback."""
from __future__ import annotations

import pytest

from handlers.search.languages import (COUNTRY_LANGUAGE, FALLBACK_LANGUAGE, MARKET_CITIES, SUPPORTED, LanguageChoice,
                                       Reason, choose_language, country_at, index_language, parse_accept_language,
                                       primary_subtag)
from letgo.traffic import MARKETS

pytestmark = pytest.mark.unit


def test_supported_languages_are_exactly_the_markets_languages() -> None:
    assert COUNTRY_LANGUAGE == {m.country: m.language for m in MARKETS}
    assert set(SUPPORTED) == {m.language for m in MARKETS}
    assert FALLBACK_LANGUAGE in SUPPORTED


MADRID, AMSTERDAM = (40.4168, -3.7038), (52.3676, 4.9041)


def test_every_market_city_of_the_traffic_is_a_place_of_its_country() -> None:
    for market in MARKETS:
        for _, lat, lon in market.cities:
            assert country_at(lat, lon) == market.country
    assert {country for country, _, _ in MARKET_CITIES} == set(COUNTRY_LANGUAGE)
    assert country_at(40.7128, -74.0060) is None  # New York is no market of ours
    assert country_at(None, None) is None


@pytest.mark.parametrize("signals, expected", [
    (dict(explicit="nl", user="tr", accept_language="pt", country="ES", lat=MADRID[0], lon=MADRID[1]),
     ("nl", Reason.EXPLICIT)),
    (dict(user="en", accept_language="en-GB", country="GB", lat=MADRID[0], lon=MADRID[1]), ("es", Reason.POINT)),
    (dict(user="tr", accept_language="en-GB", country="ES"), ("es", Reason.COUNTRY)),
    (dict(user="tr", accept_language="pt", country="US"), ("tr", Reason.USER)),
    (dict(user="tr", accept_language="pt", lat=40.7, lon=-74.0), ("tr", Reason.USER)),
    (dict(accept_language="pt-PT,pt;q=0.9", default_country="ES"), ("pt", Reason.ACCEPT_LANGUAGE)),
    (dict(default_country="NL"), ("nl", Reason.COUNTRY)),
    (dict(country="gb"), ("en", Reason.COUNTRY)),
    (dict(), ("en", Reason.FALLBACK)),
    (dict(explicit="  ", user="", accept_language="", country="TR"), ("tr", Reason.COUNTRY)),
], ids=["explicit-first", "point-before-country-and-phone", "country-before-phone", "unknown-country-skipped",
        "point-outside-markets-skipped", "accept-language", "default-country-last", "country-lowercase", "nothing",
        "blank-signals-are-absent"])
def test_choose_language_takes_the_first_signal_present(signals: dict, expected: tuple[str, Reason]) -> None:
    choice = choose_language(**signals)

    assert (choice.language, choice.reason) == expected
    assert choice.requested is None


def test_an_english_phone_in_madrid_gets_the_spanish_listings_and_knows_why() -> None:
    choice = choose_language(accept_language="en-GB,en;q=0.9", country="ES")

    assert choice.to_dict() == {"language": "es", "reason": "country", "requested": None, "source": "country",
                                "country": "ES"}
    by_point = choose_language(accept_language="en-GB", lat=AMSTERDAM[0], lon=AMSTERDAM[1])
    assert (by_point.language, by_point.reason, by_point.country) == ("nl", Reason.POINT, "NL")


def test_choose_language_region_subtags_count_as_their_language() -> None:
    assert choose_language(explicit="es-ES").language == "es"
    assert choose_language(user="EN_gb").language == "en"
    assert choose_language(accept_language="pt-BR").language == "pt"


def test_accept_language_best_supported_q_value_wins() -> None:
    choice = choose_language(accept_language="fr-FR, fr;q=0.9, de;q=0.85, nl;q=0.5, en;q=0.8", default_country="ES")

    assert (choice.language, choice.reason) == ("en", Reason.ACCEPT_LANGUAGE)


def test_accept_language_q_zero_means_not_this_language() -> None:
    assert choose_language(accept_language="es;q=0, tr", default_country="ES").language == "tr"


@pytest.mark.parametrize("signals, language, requested, source, place", [
    (dict(explicit="fr", accept_language="nl", country="ES"), "es", "fr", "explicit", "ES"),
    (dict(user="de-DE", default_country="PT"), "pt", "de-DE", "user", None),
    (dict(accept_language="fr-FR, fr;q=0.9, it;q=0.5", default_country="TR"), "tr", "fr", "accept_language", None),
    (dict(explicit="fr", country="FR"), "en", "fr", "explicit", None),
    (dict(accept_language="ja", country=None), "en", "ja", "accept_language", None),
], ids=["explicit-to-place", "user-to-default-country", "header-without-supported-to-default-country",
        "unknown-country-to-english", "no-country-to-english"])
def test_choose_language_unsupported_request_falls_back_and_says_so(signals: dict, language: str, requested: str,
                                                                   source: str, place: str | None) -> None:
    choice = choose_language(**signals)

    assert choice == LanguageChoice(language, Reason.FALLBACK, requested, source, place)
    assert choice.to_dict() == {"language": language, "reason": "fallback", "requested": requested, "source": source,
                                "country": place}


@pytest.mark.parametrize("header, expected", [
    ("da, en-gb;q=0.8, en;q=0.7", [("da", 1.0), ("en", 0.8)]),
    ("nl;q=0.5, es;q=0.5, tr;q=0.9", [("tr", 0.9), ("nl", 0.5), ("es", 0.5)]),
    ("*, es;q=0.1", [("es", 0.1)]),
    ("en;q=abc, tr;q=0.5, ;q=1, 1234, pt;q=2", [("tr", 0.5)]),
    ("es;q=0", []),
    ("", []),
    (None, []),
], ids=["duplicates-keep-best", "ties-keep-header-order", "wildcard-ignored", "malformed-skipped", "q-zero", "empty",
        "absent"])
def test_parse_accept_language(header: str | None, expected: list[tuple[str, float]]) -> None:
    assert parse_accept_language(header) == expected


@pytest.mark.parametrize("tag, expected", [("es", "es"), ("ES-es", "es"), ("zh-Hant-TW", "zh"), ("", None),
                                           ("e s", None), (None, None), ("123", None)])
def test_primary_subtag(tag: str | None, expected: str | None) -> None:
    assert primary_subtag(tag) == expected


@pytest.mark.parametrize("language, country, expected", [
    ("es", "ES", "es"), ("nl", "ES", "nl"), ("fr", "ES", "es"), ("de", "NL", "nl"), ("it", "IT", "en"),
    ("pt-PT", "PT", "pt"), (None, "TR", "tr"),
])
def test_index_language_of_a_listing(language: str | None, country: str, expected: str) -> None:
    assert index_language(language, country) == expected
