"""Searching OpenSearch: a request becomes one query DSL body, and the engine's answer becomes the model.

One round trip per search, two when the typo fallback runs (:mod:`.backend`). The exact pass: a bool query
(text as "any of": ``title_terms`` — the title with its compound heads — x3, description x0.5, each with
operator AND) with filters (terms category, range price, ``geo_distance``), wrapped in ``function_score``
gauss decays on ``listed_at`` and ``location`` for relevance (:class:`~handlers.search.backend.Ranking`: the
embedded engine computes the same decays itself); ``search_after`` on ``[sort value, item_id]``;
aggregations for the facets (terms, range, ``geo_distance`` rings). With text, the same request also asks a
term suggester (``suggest_mode: missing`` on ``title.plain``) for each word's indexed spellings and, in a
``global`` ``filters`` aggregation, whether each word (stemmed) is in any title at all.

If the exact pass found fewer than ``fuzzy_below`` listings and some word is misspelt (in no title, with
spellings within :func:`~handlers.search.backend.expansions`), the fallback pass asks for exact OR widened
matches as a ``dis_max`` of two ``constant_score`` clauses — 2 for exact, 1 for widened only — so ``_score``
is the tier: field sorts sort by ``_score`` first, relevance adds the decays to it (``boost_mode: sum``).
Exact matches come first in every order. Autocomplete is a ``bool_prefix`` ``multi_match`` over the
``search_as_you_type`` shingles of the title, with the same decays.

The bodies are built by pure functions (:func:`search_body`, :func:`autocomplete_body`) so they can be
inspected and tested without a cluster; :func:`search` and :func:`autocomplete` send them through the
:class:`~handlers.search.opensearch_client.Cluster` and read the answer back.
"""
from __future__ import annotations

import re
import time
from typing import Any, Mapping

from handlers.search.backend import (AUTOCOMPLETE_EXPANSIONS, SPELLING_CANDIDATES, SPELLING_MAX_EDITS,
                                     SPELLING_MIN_LENGTH, SPELLING_PREFIX, Ranking, corrected, dedupe_suggestions,
                                     expansions)
from handlers.search.errors import InvalidRequest
from handlers.search.geo import haversine_km
from handlers.search.model import (CATEGORIES, DISTANCE_EDGES_KM, PRICE_EDGES, AutocompleteRequest, Cursor, Facets,
                                   Hit, SearchRequest, SearchResponse, Sort, Suggestion, range_keys)
from handlers.search.opensearch_client import NAME, Cluster
from handlers.search.opensearch_schema import from_document


# -- request -> DSL ------------------------------------------------------------------------------------------
_WORD = re.compile(r"\w+")
Fallback = tuple[list[tuple[str, str]], dict[str, list[str]]]  # (words as typed / as indexed, misspelt -> spellings)


def search_body(request: SearchRequest, cursor: Cursor | None, origin: float, ranking: Ranking,
                fallback: Fallback | None = None, *, size: int | None = None) -> dict[str, Any]:
    """The request body of one pass (``origin``: the "now" the freshness decay is measured from). ``fallback``:
    the typo pass over these words; otherwise the exact pass (with the spelling probes when there is text)."""
    if not request.text:
        text: dict[str, Any] = {"match_all": {}}
    elif fallback is None:
        text = _exact_query(request.text, ranking)
    else:
        text = {"dis_max": {"queries": [
            {"constant_score": {"filter": _exact_query(request.text, ranking), "boost": 2.0}},
            {"constant_score": {"filter": _fuzzy_query(*fallback), "boost": 1.0}}]}}
    query: dict[str, Any] = {"bool": {"must": [text], "filter": _filters(request)}}
    if request.effective_sort is Sort.RELEVANCE:
        query = {"function_score": {"query": query, "score_mode": "multiply",
                                    "boost_mode": "sum" if fallback is not None else "multiply",
                                    "functions": _decays(origin, request.lat, request.lon,
                                                         ranking.distance_scale_km, ranking)}}
    aggs: dict[str, Any] = {
        "categories": {"terms": {"field": "category", "size": len(CATEGORIES)}},
        "prices": {"range": {"field": "price", "ranges": [
            {"from": lo, **({"to": hi} if hi is not None else {})} for _, lo, hi in range_keys(PRICE_EDGES)]}},
    }
    if request.has_point:
        aggs["rings"] = {"geo_distance": {
            "field": "location", "origin": {"lat": request.lat, "lon": request.lon}, "unit": "km",
            "distance_type": "arc",
            "ranges": [{"from": lo, **({"to": hi} if hi is not None else {})}
                       for _, lo, hi in range_keys(DISTANCE_EDGES_KM)]}}
    sort = _sort(request)
    if fallback is not None and request.effective_sort is not Sort.RELEVANCE:
        sort = [{"_score": "desc"}, *sort]  # the tier first
    body: dict[str, Any] = {"size": request.page_size + 1 if size is None else size, "query": query, "sort": sort,
                            "track_total_hits": True, "aggs": aggs}
    if cursor is not None:
        body["search_after"] = list(cursor.after)
    if request.text and request.fuzzy and fallback is None:
        words = list(dict.fromkeys(_WORD.findall(request.text)))
        aggs["known"] = {"global": {}, "aggs": {"words": {"filters": {"filters": {
            word: {"match": {"title_terms": {"query": word, "operator": "and"}}} for word in words}}}}}
        body["suggest"] = {"text": request.text, "spelling": {"term": {
            "field": "title.plain", "suggest_mode": "missing", "min_word_length": SPELLING_MIN_LENGTH,
            "prefix_length": SPELLING_PREFIX, "max_edits": SPELLING_MAX_EDITS, "size": SPELLING_CANDIDATES,
            "sort": "score"}}}
    return body


def fallback_of(request: SearchRequest, result: Mapping[str, Any]) -> Fallback:
    """From the exact pass: the query's words and, for each misspelt one, the spellings to widen it to."""
    known = (((result.get("aggregations") or {}).get("known") or {}).get("words") or {}).get("buckets") or {}
    words: list[tuple[str, str]] = []
    widened: dict[str, list[str]] = {}
    for entry in (result.get("suggest") or {}).get("spelling") or []:
        typed = request.text[entry["offset"]:entry["offset"] + entry["length"]]
        plain = entry["text"]
        words.append((typed, plain))
        if plain not in widened and known.get(typed, {}).get("doc_count", 1) == 0:
            widened[plain] = expansions(plain, ((o["text"], o.get("freq", 0)) for o in entry.get("options") or []))
    return words, widened


def autocomplete_body(request: AutocompleteRequest, now: float, ranking: Ranking) -> dict[str, Any]:
    match = {"multi_match": {"query": request.prefix, "type": "bool_prefix", "operator": "and",
                             "max_expansions": AUTOCOMPLETE_EXPANSIONS,
                             "fields": ["title.suggest", "title.suggest._2gram", "title.suggest._3gram"]}}
    query = {"function_score": {"query": match, "score_mode": "multiply", "boost_mode": "multiply",
                                "functions": _decays(now, request.lat, request.lon,
                                                     ranking.autocomplete_distance_scale_km, ranking)}}
    return {"size": request.limit * 5, "query": query, "_source": ["item_id", "title", "location"],
            "sort": [{"_score": "desc"}, {"item_id": "asc"}]}


def _exact_query(text: str, ranking: Ranking) -> dict[str, Any]:
    def match(field: str, boost: float) -> dict[str, Any]:
        return {"match": {field: {"query": text, "operator": "and", "boost": boost}}}

    return {"bool": {"should": [match("title_terms", ranking.title_boost),
                                match("description", ranking.description_boost)], "minimum_should_match": 1}}


def _fuzzy_query(words: list[tuple[str, str]], widened: dict[str, list[str]]) -> dict[str, Any]:
    """Every word, as typed (stemmed, in the title) or as one of its indexed spellings (in the plain title)."""
    clauses = []
    for typed, plain in words:
        either: list[dict[str, Any]] = [{"match": {"title_terms": {"query": typed, "operator": "and",
                                                                   "zero_terms_query": "all"}}}]
        if widened.get(plain):
            either.append({"terms": {"title.plain": widened[plain]}})
        clauses.append(either[0] if len(either) == 1 else {"bool": {"should": either, "minimum_should_match": 1}})
    return {"bool": {"must": clauses}} if clauses else {"match_none": {}}


def _filters(request: SearchRequest) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = []
    if request.categories:
        filters.append({"terms": {"category": list(request.categories)}})
    if request.price_min is not None or request.price_max is not None:
        bounds = {k: v for k, v in (("gte", request.price_min), ("lte", request.price_max)) if v is not None}
        filters.append({"range": {"price": bounds}})
    if request.country is not None:
        filters.append({"term": {"country": request.country}})
    if request.radius_km is not None:
        filters.append({"geo_distance": {"distance": f"{request.radius_km}km", "distance_type": "arc",
                                         "location": {"lat": request.lat, "lon": request.lon}}})
    return filters


def _sort(request: SearchRequest) -> list[Any]:
    tie, sort = {"item_id": "asc"}, request.effective_sort
    if sort is Sort.RELEVANCE:
        return [{"_score": "desc"}, tie]
    if sort is Sort.DISTANCE:
        return [{"_geo_distance": {"location": {"lat": request.lat, "lon": request.lon}, "order": "asc",
                                   "unit": "km", "distance_type": "arc"}}, tie]
    if sort is Sort.NEWEST:
        return [{"listed_at": "desc"}, tie]
    return [{"price": "asc" if sort is Sort.PRICE_ASC else "desc"}, tie]


def _decays(origin_s: float, lat: float | None, lon: float | None, distance_scale_km: float,
            ranking: Ranking) -> list[Any]:
    r = ranking
    functions = [_gauss("listed_at", str(int(origin_s * 1000)), f"{r.freshness_scale_s / 86400:g}d",
                        f"{r.freshness_offset_s / 86400:g}d", r.decay)]
    if lat is not None:
        functions.append(_gauss("location", {"lat": lat, "lon": lon}, f"{distance_scale_km:g}km",
                                f"{r.distance_offset_km:g}km", r.decay))
    return functions


def _gauss(field: str, origin: Any, scale: str, offset: str, decay: float) -> dict[str, Any]:
    return {"gauss": {field: {"origin": origin, "scale": scale, "offset": offset, "decay": decay}}}


# -- one round trip each, and the answer -> model ------------------------------------------------------------
def search(cluster: Cluster, request: SearchRequest, ranking: Ranking) -> SearchResponse:
    cursor = Cursor.decode(request, NAME)
    if cursor is not None and len(cursor.after) != (3 if cursor.fuzzy and request.effective_sort is not Sort.RELEVANCE
                                                    else 2):
        raise InvalidRequest("cursor", "malformed cursor")
    origin = cursor.origin if cursor else round(time.time(), 3)
    index = cluster.names.read_alias(request.language)
    resume_fallback = cursor is not None and cursor.fuzzy
    exact = cluster.call("search", cluster.client.search, index=index, body=search_body(
        request, None if resume_fallback else cursor, origin, ranking, size=0 if resume_fallback else None))
    exact_total = int(exact["hits"]["total"]["value"])
    if request.text and request.fuzzy and (resume_fallback or (cursor is None and exact_total < ranking.fuzzy_below)):
        words, widened = fallback_of(request, exact)
        if any(widened.values()):
            result = cluster.call("search", cluster.client.search, index=index, body=search_body(
                request, cursor, origin, ranking, (words, widened)))
            return search_response(request, result, origin, fuzzy=True, exact_total=exact_total,
                                   did_you_mean=corrected(words, widened))
    return search_response(request, exact, origin)


def search_response(request: SearchRequest, result: Mapping[str, Any], origin: float, *, fuzzy: bool = False,
                    exact_total: int | None = None, did_you_mean: str | None = None) -> SearchResponse:
    """The engine's answer to :func:`search_body` (one hit more than the page: there is a next page)."""
    raw_hits = result["hits"]["hits"]
    page = raw_hits[:request.page_size]
    relevance = request.effective_sort is Sort.RELEVANCE
    hits = []
    for raw in page:
        ad = from_document(raw["_source"])
        distance = haversine_km(request.lat, request.lon, ad.lat, ad.lon) if request.has_point else None
        tier_score = raw["sort"][0] if fuzzy else None
        hits.append(Hit(ad, distance, raw.get("_score") if relevance else None,
                        fuzzy and tier_score is not None and float(tier_score) < 2.0))
    next_cursor = None
    if len(raw_hits) > request.page_size:
        next_cursor = Cursor(tuple(page[-1]["sort"]), origin, fuzzy).encode(request, NAME)
    aggs = result.get("aggregations", {})
    facets = Facets.build({b["key"]: b["doc_count"] for b in aggs["categories"]["buckets"]},
                          [b["doc_count"] for b in aggs["prices"]["buckets"]],
                          [b["doc_count"] for b in aggs["rings"]["buckets"]] if "rings" in aggs else None)
    total = int(result["hits"]["total"]["value"])
    return SearchResponse(request.language, tuple(hits), total, facets, did_you_mean, next_cursor,
                          total - exact_total if fuzzy and exact_total is not None else 0)


def autocomplete(cluster: Cluster, request: AutocompleteRequest, ranking: Ranking) -> list[Suggestion]:
    result = cluster.call("autocomplete", cluster.client.search, index=cluster.names.read_alias(request.language),
                          body=autocomplete_body(request, time.time(), ranking))
    return suggestions(request, result)


def suggestions(request: AutocompleteRequest, result: Mapping[str, Any]) -> list[Suggestion]:
    """The engine's answer to :func:`autocomplete_body`: distinct titles, at most ``request.limit``."""
    found = []
    for raw in result["hits"]["hits"]:
        source = raw["_source"]
        distance = None
        if request.lat is not None:
            distance = haversine_km(request.lat, request.lon, source["location"]["lat"], source["location"]["lon"])
        found.append(Suggestion(source["title"], source["item_id"], distance))
    return dedupe_suggestions(found, request.limit)
