"""What an OpenSearch listing index holds: the index template (analysers + mapping) and the documents in it.

Pure values, no I/O: :mod:`.opensearch_admin` puts the templates, :mod:`.opensearch_writes` writes
:func:`to_document` and both reading paths turn hits back into ads with :func:`from_document`.

Analysis per language: standard tokenizer -> lowercase (Turkish-aware for tr, after the apostrophe filter)
-> the language's stop words -> its Snowball stemmer -> ASCII folding, for ``title`` and ``description``.
Snowball is chosen over the "light" stemmers so that both backends stem alike (tantivy ships Snowball;
:mod:`.tantivy_schema` mirrors this). Full text matches ``title_terms``: the title plus the heads of its Dutch
compounds (:mod:`.compounds`, computed in Python so both engines split alike). ``title.plain`` (lowercase +
folding, no stemming) serves typo expansions and the term suggester (a suggester on a stemmed field would
propose "biciclet"); ``title.suggest`` is ``search_as_you_type`` for autocomplete (``bool_prefix`` over its
shingles).

One composable template per language matches ``classified_ads_<lang>_v*`` *and* ``<category>_<lang>_v*`` for
every category (:meth:`IndexNames.patterns`), so a new index version or a category split is just "create
index". The mapping is ``dynamic: strict``: a field the code does not know is refused, not guessed.
"""
from __future__ import annotations

from typing import Any, Mapping

from handlers.search.compounds import index_text
from handlers.search.languages import index_language
from handlers.search.model import Ad
from handlers.search.opensearch_config import IndexNames, OpenSearchConfig

SCHEMA_VERSION = 2  # 2: title_terms (compound heads), gc_deletes, the listing-state index
GC_DELETES = "1h"
_SNOWBALL = {"es": "Spanish", "nl": "Dutch", "en": "English", "tr": "Turkish", "pt": "Portuguese"}
_STOPWORDS = {"es": "_spanish_", "nl": "_dutch_", "en": "_english_", "tr": "_turkish_", "pt": "_portuguese_"}


def index_template(language: str, config: OpenSearchConfig) -> dict[str, Any]:
    """The composable index template of one language: analysers, mapping, shard counts."""
    lowercase = "letgo_lowercase" if language == "tr" else "lowercase"
    text_filters = (["apostrophe"] if language == "tr" else []) + [lowercase, "letgo_stop", "letgo_stemmer",
                                                                    "asciifolding"]
    filters: dict[str, Any] = {"letgo_stop": {"type": "stop", "stopwords": _STOPWORDS[language]},
                               "letgo_stemmer": {"type": "snowball", "language": _SNOWBALL[language]}}
    if language == "tr":
        filters["letgo_lowercase"] = {"type": "lowercase", "language": "turkish"}
    keyword = {"type": "keyword"}
    return {
        "index_patterns": IndexNames(config.namespace).patterns(language),
        "priority": 100,
        "version": SCHEMA_VERSION,
        "template": {
            "settings": {
                "number_of_shards": config.shards, "number_of_replicas": config.replicas,
                # a delete's external version is remembered this long: an indexer that stalled between its state
                # write and its document write cannot bring back what a newer state removed meanwhile
                "gc_deletes": GC_DELETES,
                "analysis": {"filter": filters, "analyzer": {
                    "letgo_text": {"type": "custom", "tokenizer": "standard", "filter": text_filters},
                    "letgo_plain": {"type": "custom", "tokenizer": "standard", "filter": [lowercase, "asciifolding"]},
                }},
            },
            "mappings": {
                "dynamic": "strict",
                "_meta": {"schema_version": SCHEMA_VERSION, "language": language},
                "properties": {
                    "item_id": keyword, "seller_id": keyword, "category": keyword, "currency": keyword,
                    "condition": keyword, "city": keyword, "country": keyword, "language": keyword,
                    "title": {"type": "text", "analyzer": "letgo_text", "fields": {
                        "plain": {"type": "text", "analyzer": "letgo_plain"},
                        "suggest": {"type": "search_as_you_type", "analyzer": "letgo_plain"}}},
                    # the title as matched by full text: + the heads of its Dutch compounds (compounds.py)
                    "title_terms": {"type": "text", "analyzer": "letgo_text"},
                    "description": {"type": "text", "analyzer": "letgo_text"},
                    "price": {"type": "double"},
                    "location": {"type": "geo_point"},
                    "listed_at": {"type": "date", "format": "epoch_millis"},
                    "image_count": {"type": "integer"},
                    "shipping_available": {"type": "boolean"},
                },
            },
        },
    }


def state_template(config: OpenSearchConfig) -> dict[str, Any]:
    """The listing-state index: one document per listing, stored whole, found by id; purged by ``live``/``last_at``."""
    names = IndexNames(config.namespace)
    return {"index_patterns": [names.state_pattern()], "priority": 100, "version": SCHEMA_VERSION,
            "template": {"settings": {"number_of_shards": config.shards, "number_of_replicas": config.replicas},
                         "mappings": {"dynamic": "strict", "properties": {
                             "item_id": {"type": "keyword"}, "live": {"type": "boolean"},
                             "last_at": {"type": "double"}, "state": {"type": "object", "enabled": False}}}}}


def to_document(ad: Ad) -> dict[str, Any]:
    body = ad.to_dict()
    lat, lon, listed_at = body.pop("lat"), body.pop("lon"), body.pop("listed_at")
    terms = index_text(index_language(ad.language, ad.country), ad.title)
    return {**body, "title_terms": terms, "location": {"lat": lat, "lon": lon},
            "listed_at": int(round(listed_at * 1000))}


def from_document(source: Mapping[str, Any]) -> Ad:
    body = dict(source)
    body.pop("title_terms", None)
    location = body.pop("location")
    return Ad.from_dict({**body, "lat": location["lat"], "lon": location["lon"],
                         "listed_at": body["listed_at"] / 1000})
