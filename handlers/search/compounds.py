"""Dutch compounds: the head of a compound word is added to what a title is found by, on both engines alike.

Why: Dutch writes compounds as one word, so "fiets" (bike) did not find "Stadsfiets" or "Kinderfiets" and
"bank" (sofa) found no "Driezitsbank" or "Hoekbank": a Snowball stemmer cuts endings, not compounds. German
works the same way (add its list and ``de_DE`` below if it is ever a market).

How, and why this way (Lucene's ``hyphenation_decompounder`` idea, done here in Python so that tantivy and
OpenSearch split identically and osmem-server, which has no decompounder, can be held to the contract):

* split points are the word's **hyphenation points** from the LibreOffice ``nl_NL`` patterns (``pyphen``),
  so a head is only ever cut at a syllable boundary ("stads-fiets", "drie-zits-bank");
* the part after a split point is a head only if it is in a **word list of marketplace heads**
  (``data/compound_heads_nl.txt``), possibly in its plural or diminutive form ("hoek-bankje" -> bank), and the
  part before it has at least :data:`MIN_MODIFIER` letters; the longest such head wins ("drie-zits-bank": the
  list has no "zitsbank", so "bank");
* only the **head** is added — Dutch compounds are right-headed: a stadsfiets is a fiets, but a fietstas (bike
  bag) or a fietsenrek (bike rack) is not, so "fiets" finds the first and not the others. That keeps precision:
  the list leaves out short, vague heads ("bel", "rek", "stel", "top") that would make a "meubel" a "bel".

Used at index time only: :func:`index_text` is the title as it is indexed for full text (tantivy's ``title``,
OpenSearch's ``title_terms``); the displayed title, did-you-mean and autocomplete keep the title as written.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
HYPHENATION = {"nl": "nl_NL"}  # language -> pyphen dictionary; only these languages are decompounded
MIN_MODIFIER = 3
FORMS = ("tjes", "jes", "tje", "je", "en", "s")  # plural and diminutive endings a head may carry
_WORD = re.compile(r"\w+")


@lru_cache(maxsize=None)
def head_words(language: str) -> frozenset[str]:
    path = HERE / "data" / f"compound_heads_{language}.txt"
    if not path.exists():
        return frozenset()
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=None)
def _hyphenator(language: str):  # noqa: ANN202 - pyphen.Pyphen, imported only where decompounding is used
    import pyphen

    return pyphen.Pyphen(lang=HYPHENATION[language])


def _base(candidate: str, heads: frozenset[str]) -> str | None:
    if candidate in heads:
        return candidate
    for ending in FORMS:
        if candidate.endswith(ending) and candidate[: -len(ending)] in heads:
            return candidate[: -len(ending)]
    return None


@lru_cache(maxsize=65536)
def head(language: str, word: str) -> str | None:
    """The listed head of a compound ``word`` (lowercase), or None if it is not a compound we split."""
    if language not in HYPHENATION:
        return None
    heads = head_words(language)
    for position in _hyphenator(language).positions(word):
        if position >= MIN_MODIFIER:
            found = _base(word[position:], heads)
            if found is not None:
                return found
    return None


def heads(language: str, text: str) -> list[str]:
    """The heads of the compounds in ``text``, in order, each once."""
    if language not in HYPHENATION:
        return []
    found: list[str] = []
    for word in _WORD.findall(text.lower()):
        part = head(language, word)
        if part is not None and part not in found:
            found.append(part)
    return found


def index_text(language: str, title: str) -> str:
    """The title as indexed for full text: itself, then the heads of its compounds."""
    extra = heads(language, title)
    return f"{title} {' '.join(extra)}" if extra else title
