"""Searching OpenSearch: a request becomes one query DSL body, and the engine's answer becomes the model.

One round trip per search: a bool query (text as "any of": exact title x3, exact description x0.5, fuzzy
title, fuzzy title.plain — each with operator AND) with filters (terms category, range price,
``geo_distance``), wrapped in ``function_score`` gauss decays on ``listed_at`` and ``location`` for relevance
(:class:`~handlers.search.backend.Ranking`: the embedded engine computes the same decays itself);
``search_after`` on ``[sort value, item_id]``; aggregations for the facets (terms, range, ``geo_distance``
rings); a term suggester (``suggest_mode: missing``) for did-you-mean. Autocomplete is a ``bool_prefix``
``multi_match`` over the ``search_as_you_type`` shingles of the title, with the same decays.

The bodies are built by pure functions (:func:`search_body`, :func:`autocomplete_body`) so they can be
inspected and tested without a cluster; :func:`search` and :func:`autocomplete` send them through the
:class:`~handlers.search.opensearch_client.Cluster` and read the answer back.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from handlers.search.backend import AUTOCOMPLETE_EXPANSIONS, Ranking, dedupe_suggestions
from handlers.search.errors import InvalidRequest
from handlers.search.geo import haversine_km
from handlers.search.model import (CATEGORIES, DISTANCE_EDGES_KM, PRICE_EDGES, AutocompleteRequest, Cursor, Facets,
                                   Hit, SearchRequest, SearchResponse, Sort, Suggestion, range_keys)
from handlers.search.opensearch_client import NAME, Cluster
from handlers.search.opensearch_schema import from_document


# -- request -> DSL ------------------------------------------------------------------------------------------
def search_body(request: SearchRequest, cursor: Cursor | None, origin: float, ranking: Ranking) -> dict[str, Any]:
    """The request body for one search (``origin``: the "now" the freshness decay is measured from)."""
    must = _text_query(request.text, request.fuzzy, ranking) if request.text else {"match_all": {}}
    query: dict[str, Any] = {"bool": {"must": [must], "filter": _filters(request)}}
    if request.effective_sort is Sort.RELEVANCE:
        query = {"function_score": {"query": query, "score_mode": "multiply", "boost_mode": "multiply",
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
    body: dict[str, Any] = {"size": request.page_size + 1, "query": query, "sort": _sort(request),
                            "track_total_hits": True, "aggs": aggs}
    if cursor is not None:
        body["search_after"] = list(cursor.after)
    if request.text:
        body["suggest"] = {"text": request.text, "did_you_mean": {"term": {
            "field": "title.plain", "suggest_mode": "missing", "min_word_length": 4, "prefix_length": 1,
            "max_edits": 2, "sort": "score"}}}
    return body


def autocomplete_body(request: AutocompleteRequest, now: float, ranking: Ranking) -> dict[str, Any]:
    match = {"multi_match": {"query": request.prefix, "type": "bool_prefix", "operator": "and",
                             "max_expansions": AUTOCOMPLETE_EXPANSIONS,
                             "fields": ["title.suggest", "title.suggest._2gram", "title.suggest._3gram"]}}
    query = {"function_score": {"query": match, "score_mode": "multiply", "boost_mode": "multiply",
                                "functions": _decays(now, request.lat, request.lon,
                                                     ranking.autocomplete_distance_scale_km, ranking)}}
    return {"size": request.limit * 5, "query": query, "_source": ["item_id", "title", "location"],
            "sort": [{"_score": "desc"}, {"item_id": "asc"}]}


def _text_query(text: str, fuzzy: bool, ranking: Ranking) -> dict[str, Any]:
    def match(field: str, boost: float, fuzzy_: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {"query": text, "operator": "and", "boost": boost}
        if fuzzy_:
            spec["fuzziness"] = "AUTO"
        return {"match": {field: spec}}

    should = [match("title", ranking.title_boost, False), match("description", ranking.description_boost, False)]
    if fuzzy:
        should += [match("title", 1.0, True), match("title.plain", 1.0, True)]
    return {"bool": {"should": should, "minimum_should_match": 1}}


def _filters(request: SearchRequest) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = []
    if request.categories:
        filters.append({"terms": {"category": list(request.categories)}})
    if request.price_min is not None or request.price_max is not None:
        bounds = {k: v for k, v in (("gte", request.price_min), ("lte", request.price_max)) if v is not None}
        filters.append({"range": {"price": bounds}})
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
    if cursor is not None and len(cursor.after) != 2:
        raise InvalidRequest("cursor", "malformed cursor")
    origin = cursor.origin if cursor else round(time.time(), 3)
    result = cluster.call("search", cluster.client.search, index=cluster.names.read_alias(request.language),
                          body=search_body(request, cursor, origin, ranking))
    return search_response(request, result, origin)


def search_response(request: SearchRequest, result: Mapping[str, Any], origin: float) -> SearchResponse:
    """The engine's answer to :func:`search_body` (one hit more than the page: there is a next page)."""
    raw_hits = result["hits"]["hits"]
    page = raw_hits[:request.page_size]
    hits = []
    for raw in page:
        ad = from_document(raw["_source"])
        distance = haversine_km(request.lat, request.lon, ad.lat, ad.lon) if request.has_point else None
        hits.append(Hit(ad, distance, raw.get("_score") if request.effective_sort is Sort.RELEVANCE else None))
    next_cursor = None
    if len(raw_hits) > request.page_size:
        next_cursor = Cursor(tuple(page[-1]["sort"]), origin).encode(request, NAME)
    aggs = result.get("aggregations", {})
    facets = Facets.build({b["key"]: b["doc_count"] for b in aggs["categories"]["buckets"]},
                          [b["doc_count"] for b in aggs["prices"]["buckets"]],
                          [b["doc_count"] for b in aggs["rings"]["buckets"]] if "rings" in aggs else None)
    return SearchResponse(request.language, tuple(hits), int(result["hits"]["total"]["value"]), facets,
                          _did_you_mean(result), next_cursor)


def _did_you_mean(result: Mapping[str, Any]) -> str | None:
    entries = (result.get("suggest") or {}).get("did_you_mean") or []
    words, changed = [], False
    for entry in entries:
        options = entry.get("options") or []
        if options:
            words.append(options[0]["text"])
            changed = True
        else:
            words.append(entry["text"])
    return " ".join(words) if changed else None


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
