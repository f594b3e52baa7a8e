"""Searching one tantivy language index: a request becomes tantivy queries, the matches become the model.

Two query paths, chosen by the request (never a per-document Python loop):

* **columns** — when the request has a point or ranks by relevance: tantivy matches text + category +
  price + bounding box and returns the matching doc addresses with their BM25 scores; numpy reads the
  needed fast-field columns of those docs (category, price, lat/lon, listed_at, a 64-bit key of the item
  id) and computes the exact distance filter, the facets (``bincount`` / ``searchsorted``: exact by
  construction), the ranking decays and the sort key; the page after the cursor's ``(sort value, key)`` is
  found with a partial sort. Cost grows with the number of matches, which text and radius keep small
  (100,000 listings: ~2 ms p50, ~4-13 ms p99 for text + facets + radius on these machines).
* **sorted** — no point and a field order (newest, price): tantivy counts, aggregates the facets (terms +
  range aggregations) and returns the top of the page by fast field itself, so browsing a whole market
  costs ~2 ms whatever its size (details in :func:`_search_sorted`).

Only the page's stored documents are loaded. The slow case is a point *without* a radius over a whole
market (every listing gets a distance): ~25 ms per 35,000 listings; the API should default a radius.

The typo fallback (:mod:`.backend`: only when the exact pass finds fewer than ``fuzzy_below``) takes the
columns path: exact matches are tier 0, the widened ones tier 1, sorted (tier, value, key). The text clause,
the decays (OpenSearch ``gauss`` semantics, :class:`~handlers.search.backend.Ranking`) and the spellings a
misspelt word is widened to (OpenSearch's term suggester in mode ``missing``; here the index's own vocabulary)
mirror :mod:`.opensearch_queries`, so one contract suite holds both engines to the same answers.
"""
from __future__ import annotations

import math
import re
import time
from typing import Any, Iterable

import numpy as np
import tantivy

from handlers.search.backend import (AUTOCOMPLETE_EXPANSIONS, SPELLING_PREFIX, Ranking, corrected, dedupe_suggestions,
                                     expansions)
from handlers.search.errors import InvalidRequest
from handlers.search.geo import EARTH_RADIUS_KM, bounding_boxes
from handlers.search.model import (CATEGORIES, CATEGORY_CODE, DISTANCE_EDGES_KM, PRICE_EDGES, AutocompleteRequest,
                                   Cursor, Facets, Hit, SearchRequest, SearchResponse, Sort, Suggestion, range_keys)
from handlers.search.tantivy_index import LanguageIndex
from handlers.search.tantivy_schema import prepare

_AUTOCOMPLETE_HYDRATE = 10  # hydrate at most limit x this many candidates while removing duplicate titles
_Must, _Should = tantivy.Occur.Must, tantivy.Occur.Should


def haversine(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    """:func:`handlers.search.geo.haversine_km` over columns."""
    p1, p2 = math.radians(lat0), np.radians(lat)
    h = np.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(np.radians(lon - lon0) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(h)))


def gauss(distance: np.ndarray, scale: float, offset: float, decay: float) -> np.ndarray:
    """OpenSearch's ``gauss`` decay: 1 within ``offset``, ``decay`` at ``offset + scale``, towards 0 beyond."""
    sigma2 = -(scale ** 2) / (2 * math.log(decay))  # the variance OpenSearch derives from scale and decay
    excess = np.maximum(0.0, np.abs(distance) - offset)
    return np.exp(-(excess ** 2) / (2 * sigma2))


# -- request -> tantivy queries ------------------------------------------------------------------------------
_WORD = re.compile(r"\w+")  # tantivy's simple tokenizer: runs of alphanumeric characters


def _every(queries: list[Any]) -> Any:
    return queries[0] if len(queries) == 1 else tantivy.Query.boolean_query([(_Must, q) for q in queries])


def _exact_query(index: LanguageIndex, text: str, ranking: Ranking) -> Any:
    """Mirror of the OpenSearch exact clause: title (with compound heads) x3 or description x0.5, every term."""
    stems = index.text_analyzer.analyze(prepare(index.language, text))
    if not stems:
        return tantivy.Query.empty_query()
    schema = index.schema
    return tantivy.Query.boolean_query([
        (_Should, tantivy.Query.boost_query(_every([tantivy.Query.term_query(schema, "title", s) for s in stems]),
                                            ranking.title_boost)),
        (_Should, tantivy.Query.boost_query(
            _every([tantivy.Query.term_query(schema, "description", s) for s in stems]), ranking.description_boost))])


def _words(index: LanguageIndex, text: str) -> list[tuple[str, str]]:
    """(word as typed, its plain token) per word of the query, as the OpenSearch term suggester tokenises it."""
    out = []
    for word in _WORD.findall(prepare(index.language, text)):
        plain = index.plain_analyzer.analyze(word)
        if plain:
            out.append((word, plain[0]))
    return out


def _known(index: LanguageIndex, word: str) -> bool:
    """A word some title has, as written or stemmed ("bikes" is known where titles say "bike")."""
    return all(index.searcher.doc_freq("title", stem) for stem in index.text_analyzer.analyze(word))


def _widen(index: LanguageIndex, words: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Each misspelt word (known to no title) -> its indexed spellings (:func:`.backend.expansions`)."""
    widened = {}
    for word, plain in words:
        if plain not in widened and not _known(index, word):
            widened[plain] = expansions(plain, index.vocabulary(plain[:SPELLING_PREFIX]))
    return widened


def _fuzzy_query(index: LanguageIndex, words: list[tuple[str, str]], widened: dict[str, list[str]]) -> Any:
    """Every word, as typed (stemmed, in the title) or as one of its indexed spellings (in the plain title)."""
    schema, clauses = index.schema, []
    for word, plain in words:
        either = []
        stems = index.text_analyzer.analyze(word)
        if stems:
            either.append(_every([tantivy.Query.term_query(schema, "title", s) for s in stems]))
        if widened.get(plain):
            either.append(tantivy.Query.term_set_query(schema, "title_plain", widened[plain]))
        if either:
            clauses.append(either[0] if len(either) == 1 else
                           tantivy.Query.boolean_query([(_Should, q) for q in either]))
    return _every(clauses) if clauses else tantivy.Query.empty_query()


def _filters(index: LanguageIndex, request: SearchRequest) -> list[Any]:
    schema, Float = index.schema, tantivy.FieldType.Float
    filters = []
    if request.categories:
        filters.append(tantivy.Query.term_set_query(schema, "category",
                                                    [CATEGORY_CODE[c] for c in request.categories]))
    if request.price_min is not None or request.price_max is not None:
        filters.append(tantivy.Query.range_query(schema, "price", Float, request.price_min, request.price_max))
    if request.country is not None:
        filters.append(tantivy.Query.term_query(schema, "country", request.country))
    if request.radius_km is not None:
        boxes = [tantivy.Query.boolean_query([
            (_Must, tantivy.Query.range_query(schema, "lat", Float, lat_lo, lat_hi)),
            (_Must, tantivy.Query.range_query(schema, "lon", Float, lon_lo, lon_hi))])
            for lat_lo, lat_hi, lon_lo, lon_hi in bounding_boxes(request.lat, request.lon, request.radius_km)]
        filters.append(boxes[0] if len(boxes) == 1 else tantivy.Query.boolean_query([(_Should, b) for b in boxes]))
    return [tantivy.Query.const_score_query(f, 0.0) for f in filters]


def _matches(index: LanguageIndex, query: Any) -> tuple[tuple[float, ...], list[Any]]:
    searcher = index.searcher
    total = searcher.num_docs
    if not total:
        return (), []
    hits = searcher.search(query, limit=total, count=False).hits
    if not hits:
        return (), []
    scores, addresses = zip(*hits)
    return scores, list(addresses)


def _column(index: LanguageIndex, name: str, addresses: list[Any], dtype: Any) -> np.ndarray:
    return np.asarray(index.searcher.fast_field_values(name, addresses), dtype=dtype)


# -- search ----------------------------------------------------------------------------------------------------
def search(index: LanguageIndex, request: SearchRequest, ranking: Ranking, engine: str) -> SearchResponse:
    """One page of ``request`` from ``index`` (``engine`` binds the cursor to the backend that made it)."""
    cursor = Cursor.decode(request, engine)
    after = None
    if cursor is not None:
        try:
            after = tuple(float(v) for v in cursor.after[:-1]) + (int(cursor.after[-1]),)
        except (IndexError, TypeError, ValueError):
            raise InvalidRequest("cursor", "malformed cursor") from None
        if len(after) != (3 if cursor.fuzzy else 2):
            raise InvalidRequest("cursor", "malformed cursor")
    origin = cursor.origin if cursor else round(time.time(), 3)
    filters = [(_Must, q) for q in _filters(index, request)]

    def query(text_query: Any | None) -> Any:
        clauses = ([(_Must, text_query)] if text_query is not None else []) + filters
        return tantivy.Query.boolean_query(clauses) if clauses else tantivy.Query.all_query()

    exact = query(_exact_query(index, request.text, ranking) if request.text else None)
    if request.text and request.fuzzy and (cursor is None or cursor.fuzzy):
        exact_total = index.searcher.search(exact, limit=1, count=True).count if index.searcher.num_docs else 0
        if (cursor is not None and cursor.fuzzy) or exact_total < ranking.fuzzy_below:
            words = _words(index, request.text)
            widened = _widen(index, words)
            if any(widened.values()):
                union = query(tantivy.Query.boolean_query([(_Should, exact),
                                                           (_Should, _fuzzy_query(index, words, widened))]))
                found = index.searcher.search(exact, limit=max(exact_total, 1)).hits if exact_total else []
                exact_docs = {(a.segment_ord, a.doc) for _, a in found}
                total, facets, hits, last = _search_columns(index, request, union, after, origin, ranking, exact_docs)
                next_cursor = None if last is None else Cursor(last, origin, True).encode(request, engine)
                return SearchResponse(request.language, hits, total, facets,
                                      corrected(words, widened), next_cursor,
                                      total - exact_total)
    if request.has_point or request.effective_sort is Sort.RELEVANCE:
        total, facets, hits, last = _search_columns(index, request, exact, after, origin, ranking)
    else:
        total, facets, hits, last = _search_sorted(index, request, exact, after)
    next_cursor = None if last is None else Cursor(last, origin).encode(request, engine)
    return SearchResponse(request.language, hits, total, facets, None, next_cursor)


def _search_columns(index: LanguageIndex, request: SearchRequest, query: Any, after: tuple[Any, ...] | None,
                    origin: float, ranking: Ranking,
                    exact_docs: set[tuple[int, int]] | None = None) -> tuple[int, Facets, tuple[Hit, ...], Any]:
    """Every match's columns into numpy: exact distances, facets, ranking, then the page after the cursor.

    With ``exact_docs`` (the typo fallback) the matches in it form tier 0 and the others tier 1: the order is
    (tier, sort value, key), relevance within a tier is freshness x distance (+ 2 or 1 for the tier, as the
    OpenSearch fallback scores), and the cursor carries the tier."""
    scores, addresses = _matches(index, query)
    n = len(addresses)
    column = lambda name, dtype=np.float64: _column(index, name, addresses, dtype)  # noqa: E731
    keep = np.ones(n, dtype=bool)
    distance = None
    if request.has_point:
        distance = haversine(column("lat"), column("lon"), request.lat, request.lon)
        if request.radius_km is not None:
            keep = distance <= request.radius_km
    category, price = column("category", np.int64), column("price")
    facets = Facets.build(
        dict(zip(CATEGORIES, np.bincount(category[keep], minlength=len(CATEGORIES)).tolist())),
        np.bincount(np.searchsorted(PRICE_EDGES, price[keep], side="right"),
                    minlength=len(PRICE_EDGES) + 1).tolist(),
        None if distance is None else np.bincount(np.searchsorted(DISTANCE_EDGES_KM, distance[keep], side="right"),
                                                  minlength=len(DISTANCE_EDGES_KM) + 1).tolist())
    total = int(keep.sum())
    if not total:
        return 0, facets, (), None
    key = column("key", np.int64)
    score = None
    sort = request.effective_sort
    tier = None
    if exact_docs is not None:
        tier = np.fromiter(((a.segment_ord, a.doc) not in exact_docs for a in addresses), dtype=np.float64, count=n)
    if sort is Sort.RELEVANCE:
        text_score = np.asarray(scores, dtype=np.float64) if tier is None else np.zeros(n)
        score = _relevance(request, text_score, column("listed_at"), distance, origin, ranking, fallback=tier)
        primary = -score
    elif sort is Sort.DISTANCE:
        primary = distance
    elif sort is Sort.NEWEST:
        primary = -column("listed_at")
    elif sort is Sort.PRICE_ASC:
        primary = price
    else:
        primary = -price
    if after is not None:
        if tier is None:
            keep &= (primary > after[0]) | ((primary == after[0]) & (key > after[1]))
        else:
            at, ap, ak = after
            keep &= (tier > at) | ((tier == at) & ((primary > ap) | ((primary == ap) & (key > ak))))
    rows = np.flatnonzero(keep)
    wanted = request.page_size + 1
    if tier is not None:  # the fallback: (tier, value, key); its matches are few enough to sort outright
        rows = rows[np.lexsort((key[rows], primary[rows], tier[rows]))][:wanted]
    else:
        if len(rows) > wanted:  # partial sort: everything up to the wanted-th value (ties included), then order
            cut = np.partition(primary[rows], wanted - 1)[wanted - 1]
            rows = rows[primary[rows] <= cut]
        rows = rows[np.lexsort((key[rows], primary[rows]))][:wanted]
    page = rows[:request.page_size]
    hits = tuple(index.hit(addresses[r], None if distance is None else float(distance[r]),
                           None if score is None else float(score[r]), tier is not None and bool(tier[r]))
                 for r in page)
    last = None
    if len(rows) > request.page_size:
        last = (float(primary[page[-1]]), int(key[page[-1]]))
        if tier is not None:
            last = (float(tier[page[-1]]),) + last
    return total, facets, hits, last


def _search_sorted(index: LanguageIndex, request: SearchRequest, query: Any,
                   after: tuple[float, int] | None) -> tuple[int, Facets, tuple[Hit, ...], Any]:
    """No point, a field order: tantivy counts, aggregates and picks the top of the page itself.

    Browsing a whole market ("newest first", "cheapest bikes") must not pull every listing into Python.
    The page after ``(value, key)`` is: the listings tied on ``value`` with a larger key, then the best
    of those strictly beyond ``value``; the last value of a page is completed with all its ties, so
    equal prices or times are ordered by key and the cursor stays exact.
    """
    searcher, schema, Float = index.searcher, index.schema, tantivy.FieldType.Float
    field, descending = {Sort.NEWEST: ("listed_at", True), Sort.PRICE_ASC: ("price", False),
                         Sort.PRICE_DESC: ("price", True)}[request.effective_sort]
    total = searcher.search(query, limit=1, count=True).count if searcher.num_docs else 0
    facets = _aggregate_facets(index, query)
    if not total:
        return 0, facets, (), None

    def both(*queries: Any) -> Any:
        return tantivy.Query.boolean_query([(_Must, q) for q in queries])

    def equal(value: float) -> Any:
        return tantivy.Query.range_query(schema, field, Float, value, value)

    def by_key(addresses: list[Any], value: float) -> list[tuple[float, int, Any]]:
        keys = searcher.fast_field_values("key", addresses) if addresses else []
        return sorted(((value, k, a) for k, a in zip(keys, addresses)), key=lambda t: t[1])

    wanted = request.page_size + 1
    picked: list[tuple[float, int, Any]] = []
    rest = query
    if after is not None:
        value, key = after
        ties = both(query, equal(value), tantivy.Query.range_query(schema, "key", tantivy.FieldType.Integer, key,
                                                                   None, include_lower=False))
        picked = by_key([a for _, a in searcher.search(ties, limit=total).hits], value)[:wanted]
        beyond = (tantivy.Query.range_query(schema, field, Float, None, value, include_upper=False) if descending
                  else tantivy.Query.range_query(schema, field, Float, value, None, include_lower=False))
        rest = both(query, beyond)
    need = wanted - len(picked)
    if need > 0:
        order = tantivy.Order.Desc if descending else tantivy.Order.Asc
        top = searcher.search(rest, limit=need, count=False, order_by_field=field, order=order).hits
        if top:
            boundary = top[-1][0]
            for value in sorted({v for v, _ in top if v != boundary}, reverse=descending):
                picked += by_key([a for v, a in top if v == value], value)
            tied = searcher.search(both(rest, equal(boundary)), limit=total).hits
            picked += by_key([a for _, a in tied], boundary)
    picked = picked[:wanted]
    page = picked[:request.page_size]
    hits = tuple(index.hit(address) for _, _, address in page)
    last = (page[-1][0], page[-1][1]) if len(picked) > request.page_size else None
    return total, facets, hits, last


def _aggregate_facets(index: LanguageIndex, query: Any) -> Facets:
    ranges = [{k: v for k, v in (("from", lo if lo else None), ("to", hi)) if v is not None}
              for _, lo, hi in range_keys(PRICE_EDGES)]
    result = index.searcher.aggregate(query, {
        "categories": {"terms": {"field": "category", "size": len(CATEGORIES)}},
        "prices": {"range": {"field": "price", "ranges": ranges}}})
    counts = {CATEGORIES[int(b["key"])]: b["doc_count"] for b in result["categories"]["buckets"]}
    return Facets.build(counts, [b["doc_count"] for b in result["prices"]["buckets"]], None)


def _relevance(request: SearchRequest, text_score: np.ndarray, listed_at: np.ndarray, distance: np.ndarray | None,
               origin: float, ranking: Ranking, fallback: np.ndarray | None = None) -> np.ndarray:
    """Text score x decays; in the typo fallback (``fallback`` = tier per match) 2 or 1 for the tier + the decays."""
    r = ranking
    score = text_score if request.text and fallback is None else np.ones_like(text_score)
    score = score * gauss(listed_at - origin, r.freshness_scale_s, r.freshness_offset_s, r.decay)
    if distance is not None:
        score = score * gauss(distance, r.distance_scale_km, r.distance_offset_km, r.decay)
    if fallback is not None:
        score = score + (2.0 - fallback)
    return np.round(score, 9)  # the same on every page: cursor comparisons are exact


# -- autocomplete ----------------------------------------------------------------------------------------------
def autocomplete(index: LanguageIndex, request: AutocompleteRequest, ranking: Ranking) -> list[Suggestion]:
    """Distinct titles whose plain words complete the prefix, by text score x freshness (x distance)."""
    words = index.plain_analyzer.analyze(prepare(index.language, request.prefix))
    if not words:
        return []
    complete, last = (words, None) if request.prefix.endswith(" ") else (words[:-1], words[-1])
    clauses = [(_Must, tantivy.Query.term_query(index.schema, "title_plain", w)) for w in complete]
    if last is not None:
        expansions = [t for t, _ in index.searcher.terms_with_prefix("title_plain", last,
                                                                     limit=AUTOCOMPLETE_EXPANSIONS)]
        if not expansions:
            return []
        clauses.append((_Must, tantivy.Query.term_set_query(index.schema, "title_plain", expansions)))
    scores, addresses = _matches(index, tantivy.Query.boolean_query(clauses))
    if not addresses:
        return []
    r = ranking
    score = np.asarray(scores, dtype=np.float64) * gauss(
        _column(index, "listed_at", addresses, np.float64) - time.time(), r.freshness_scale_s,
        r.freshness_offset_s, r.decay)
    distance = None
    if request.lat is not None:
        distance = haversine(_column(index, "lat", addresses, np.float64),
                             _column(index, "lon", addresses, np.float64), request.lat, request.lon)
        score = score * gauss(distance, r.autocomplete_distance_scale_km, r.distance_offset_km, r.decay)
    key = _column(index, "key", addresses, np.int64)
    order = np.lexsort((key, -np.round(score, 9)))[:request.limit * _AUTOCOMPLETE_HYDRATE]

    def candidates() -> Iterable[Suggestion]:
        for row in order:
            source = index.source(addresses[row])
            yield Suggestion(source["title"], source["item_id"], None if distance is None else float(distance[row]))

    return dedupe_suggestions(candidates(), request.limit)
