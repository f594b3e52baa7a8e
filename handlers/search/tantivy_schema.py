"""What a tantivy language index holds: its fields, and the analysers that mirror the OpenSearch templates.

Analysis: simple tokenizer -> lowercase -> the language's stop words -> its Snowball stemmer -> ASCII folding
for ``title``/``description`` (``letgo_text``; ``title`` is indexed with the heads of its Dutch compounds
appended, :func:`handlers.search.compounds.index_text`), and an unstemmed, folded ``title_plain`` (``letgo_plain``)
for typo tolerance, autocomplete and the did-you-mean vocabulary (suggesting from stems would offer
"biciclet"). Turkish dotted/dotless I is folded before analysis (:func:`prepare`: tantivy's lowercase is not
Turkish-aware); tantivy has no Turkish stop list, OpenSearch does (:mod:`.opensearch_schema`).

tantivy has no geo type and no string sort: ``lat``/``lon`` are float fast fields (a bounding box as range
queries, refined by the exact distance), and ``key`` — a 64-bit hash of the item id — is the sort tie-breaker
and cursor position. The whole ad is stored once, as JSON in ``source``. Index directories carry
:data:`SCHEMA_VERSION` in their names (``classified_ads_es_v1``, like the OpenSearch concrete indices): a
schema change bumps it and the local stage re-fills the new directories from events.
"""
from __future__ import annotations

import hashlib
from typing import Any

import tantivy

SCHEMA_VERSION = 2  # 2: compound heads in title (handlers/search/compounds.py), the listing-state index
_STEMMER = {"es": "spanish", "nl": "dutch", "en": "english", "tr": "turkish", "pt": "portuguese"}
_STOPWORDS = {"es": "spanish", "nl": "dutch", "en": "english", "pt": "portuguese"}  # tantivy has no Turkish list
_MAX_TOKEN = 40  # longer "words" are noise (hashes, URLs) and would bloat the fuzzy automata


def item_key(item_id: str) -> int:
    """A signed 64-bit key of the item id: the sort tie-breaker and cursor position (a fast field)."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "big", signed=True)


def prepare(language: str, text: str) -> str:
    """Text as the analysers should see it: Turkish dotted/dotless I folded by hand."""
    return text.replace("İ", "i").replace("I", "ı") if language == "tr" else text


def analyzer(language: str | None) -> Any:
    """``letgo_text`` of ``language`` (stop words + stemmer), or ``letgo_plain`` for ``None``."""
    builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(
        tantivy.Filter.remove_long(_MAX_TOKEN)).filter(tantivy.Filter.lowercase())
    if language is not None:
        if language in _STOPWORDS:
            builder = builder.filter(tantivy.Filter.stopword(_STOPWORDS[language]))
        builder = builder.filter(tantivy.Filter.stemmer(_STEMMER[language]))
    return builder.filter(tantivy.Filter.ascii_fold()).build()


def schema() -> Any:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("item_id", tokenizer_name="raw", index_option="basic")
    sb.add_text_field("title", tokenizer_name="letgo_text")
    sb.add_text_field("title_plain", tokenizer_name="letgo_plain")
    sb.add_text_field("description", tokenizer_name="letgo_text")
    sb.add_text_field("country", tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("category", indexed=True, fast=True)
    sb.add_float_field("price", fast=True)
    sb.add_float_field("lat", fast=True)
    sb.add_float_field("lon", fast=True)
    sb.add_float_field("listed_at", fast=True)
    sb.add_integer_field("key", fast=True)
    sb.add_bytes_field("source", stored=True)
    return sb.build()
