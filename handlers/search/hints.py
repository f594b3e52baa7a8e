"""Help for a search that found nothing: the same search in another language of that place, or a wider radius.

Why: an empty page is where a buyer gives up. Two causes are common and cheap to detect, so the API checks them
— only when a text search found nothing, so a search that found something costs nothing more:

* **another language**: listings at a place are not all in its language (an English listing in Madrid lives
  in the English index). The same search runs in every other language index, restricted to the place — the
  request's radius, or else the country the buyer is in (:attr:`LanguageChoice.country`) — and each language
  with matches is offered: ``{"language": "en", "total": 12}``;
* **a wider radius**: with a radius and nothing inside it, the same search without the radius counts the
  matches per distance ring; the nearest ring edge that holds some is offered:
  ``{"radius_km": 25, "total": 7}`` (or the API's maximum radius when they are all farther than 50 km).

Did-you-mean needs no help here: the engine's typo fallback gives it (:mod:`handlers.search.backend`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from handlers.search.languages import SUPPORTED, LanguageChoice
from handlers.search.model import DISTANCE_EDGES_KM, MAX_RADIUS_KM, SearchRequest, SearchResponse

Search = Callable[[SearchRequest], SearchResponse]


def alternatives(search: Search, request: SearchRequest, choice: LanguageChoice) -> list[dict[str, Any]]:
    """Other language indices with matches for this search at this place, most matches first."""
    if not request.text or (request.radius_km is None and choice.country is None):
        return []
    place = {} if request.radius_km is not None else {"country": choice.country}
    found = []
    for language in SUPPORTED:
        if language == request.language:
            continue
        total = search(replace(request, language=language, cursor=None, page_size=1, **place)).total
        if total:
            found.append({"language": language, "total": total})
    return sorted(found, key=lambda a: (-a["total"], a["language"]))


def wider(search: Search, request: SearchRequest) -> dict[str, Any] | None:
    """The smallest wider radius with matches, and how many; None without a radius or with no match anywhere."""
    if request.radius_km is None:
        return None
    around = search(replace(request, radius_km=None, cursor=None, page_size=1))
    within = 0
    for edge, ring in zip(DISTANCE_EDGES_KM, around.facets.distance_rings):
        within += ring.count
        if edge > request.radius_km and within:
            return {"radius_km": edge, "total": within}
    if around.total:
        farthest = search(replace(request, radius_km=MAX_RADIUS_KM, cursor=None, page_size=1)).total
        if farthest:
            return {"radius_km": MAX_RADIUS_KM, "total": farthest}
    return None


def zero_result_hints(search: Search, request: SearchRequest, response: SearchResponse,
                      choice: LanguageChoice) -> dict[str, Any]:
    """``{"alternatives": [...], "wider": {...} | None}`` — empty unless a text search found nothing."""
    if response.total or not request.text or request.cursor is not None:
        return {"alternatives": [], "wider": None}
    return {"alternatives": alternatives(search, request, choice), "wider": wider(search, request)}
