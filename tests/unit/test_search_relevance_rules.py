"""The pure rules behind search relevance (issue 13): which words the typo fallback widens and to what, the
did-you-mean, and which Dutch compounds are split — no engine, no I/O."""
from __future__ import annotations

import pytest

from handlers.search.backend import corrected, expansions, fuzzy_edits
from handlers.search.compounds import head, heads, index_text

pytestmark = pytest.mark.unit


def test_short_words_and_model_numbers_are_never_widened() -> None:
    assert [fuzzy_edits(w) for w in ("tv", "sofa", "casco", "iphnoe", "bicileta", "s23", "a54x", "128gb")] == \
        [0, 1, 1, 1, 2, 0, 0, 0]


def test_expansions_keep_the_first_letter_the_edit_budget_and_prefer_close_then_frequent() -> None:
    candidates = [("bicicleta", 40), ("bicicletas", 3), ("vicicleta", 99), ("bicileta2", 5), ("biela", 7),
                  ("bicicleto", 40)]
    assert expansions("bicileta", candidates) == ["bicicleta", "bicicleto", "bicicletas"]
    assert expansions("casco", [("casio", 50), ("cascos", 2)]) == ["casio", "cascos"]  # equally close: frequent first
    assert expansions("s23", [("s22", 9), ("s21", 9)]) == []


def test_did_you_mean_replaces_only_the_misspelt_words_keeping_the_others_as_typed() -> None:
    words = [("bicileta", "bicileta"), ("montaña", "montana")]
    assert corrected(words, {"bicileta": ["bicicleta"]}) == "bicicleta montaña"
    assert corrected(words, {"bicileta": []}) is None


@pytest.mark.parametrize("word, expected", [
    ("stadsfiets", "fiets"), ("kinderfiets", "fiets"), ("stadsfietsen", "fiets"), ("driezitsbank", "bank"),
    ("hoekbank", "bank"), ("hoekbankje", "bank"), ("bureaustoel", "stoel"), ("eettafel", "tafel"),
    ("fiets", None), ("bankstel", None), ("fietsenrek", None), ("meubel", None), ("koptelefoon", None),
    ("televisie", None),
])
def test_a_dutch_compound_is_split_at_a_hyphenation_point_into_a_listed_head(word: str, expected: str | None) -> None:
    assert head("nl", word) == expected


def test_only_dutch_titles_get_heads_and_the_title_comes_first() -> None:
    assert heads("nl", "Stadsfiets en Hoekbank, kinderfiets") == ["fiets", "bank"]
    assert index_text("nl", "Stadsfiets Gazelle") == "Stadsfiets Gazelle fiets"
    assert index_text("es", "Stadsfiets Gazelle") == "Stadsfiets Gazelle"
    assert index_text("nl", "Gazelle") == "Gazelle"
