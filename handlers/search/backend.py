"""The one search interface both engines implement, and the behaviour they share.

Two backends sit behind it: OpenSearch in AWS (:mod:`handlers.search.opensearch_backend`) and tantivy
embedded in the process for the local stage (:mod:`handlers.search.tantivy_backend`). Callers — the search
API and the stream indexer — only ever see :class:`SearchBackend`, and one contract test suite
(``tests/functional/test_search_contract.py``) holds both engines to the same answers.

Shared rules, implemented here once so the engines cannot drift:

* ``index(ads)`` is idempotent by ``item_id``: the last version of an ad in a batch wins, re-indexing
  replaces, and an ad whose language changed leaves its old language index (it is routed by
  :func:`~handlers.search.languages.index_language`).
* Written listings become searchable after ``refresh()`` (OpenSearch refreshes by itself every second; the
  embedded engine on request), like every near-real-time engine.
* Relevance = text score x freshness decay (x distance decay when the request has a point), with the
  parameters of :class:`Ranking`; OpenSearch applies them as ``function_score`` gauss decays.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from types import TracebackType
from typing import Iterable

from handlers.search.languages import index_language
from handlers.search.model import Ad, AutocompleteRequest, SearchRequest, SearchResponse, Suggestion

MIN_FUZZY_LENGTHS = (3, 6)  # OpenSearch "AUTO": 0 edits below 3 characters, 1 below 6, else 2
SPELLING_MIN_LENGTH = 4  # OpenSearch term suggester defaults: min_word_length 4, prefix_length 1, max_edits 2
SPELLING_PREFIX = 1
SPELLING_MAX_EDITS = 2
AUTOCOMPLETE_EXPANSIONS = 50  # match_bool_prefix max_expansions


@dataclass(frozen=True, slots=True)
class Ranking:
    """Decays that make a relevant, fresh and near listing rank first (OpenSearch ``gauss`` semantics)."""

    freshness_scale_s: float = 30 * 86400.0  # a 31-day-old listing scores half of a new one...
    freshness_offset_s: float = 86400.0  # ...and anything from the last day scores as new
    distance_scale_km: float = 10.0
    distance_offset_km: float = 1.0
    decay: float = 0.5
    autocomplete_distance_scale_km: float = 25.0
    title_boost: float = 3.0
    description_boost: float = 0.5


def fuzziness(term: str) -> int:
    """Edits a term may be off by (OpenSearch ``fuzziness: AUTO``)."""
    short, medium = MIN_FUZZY_LENGTHS
    return 0 if len(term) < short else 1 if len(term) < medium else 2


class SearchBackend(abc.ABC):
    """A search engine holding one index per supported language."""

    name: str = "abstract"

    # -- lifecycle -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def setup(self) -> None:
        """Create whatever is missing (indices, templates, aliases). Idempotent: run it on every start/deploy."""

    def refresh(self) -> None:  # noqa: B027 - optional: an engine that searches what it wrote needs nothing
        """Make everything written so far searchable."""

    def close(self) -> None:  # noqa: B027 - optional: an engine holding no resources needs nothing
        """Release clients, writers and files. The backend is unusable afterwards."""

    def __enter__(self) -> "SearchBackend":
        self.setup()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------------------
    def index(self, ads: Iterable[Ad]) -> int:
        """Write listings in bulk, replacing any earlier version (by item_id). Returns how many were written.

        Raises :class:`~handlers.search.errors.IndexingFailed` naming the refused ones, after writing the rest.
        """
        latest: dict[str, Ad] = {}
        for ad in ads:
            latest.pop(ad.item_id, None)
            latest[ad.item_id] = ad
        if not latest:
            return 0
        by_language: dict[str, list[Ad]] = {}
        for ad in latest.values():
            by_language.setdefault(index_language(ad.language, ad.country), []).append(ad)
        self._write(by_language)
        return len(latest)

    def remove(self, item_ids: Iterable[str]) -> None:
        """Delete listings from every language index. Unknown ids are fine (idempotent)."""
        ids = list(dict.fromkeys(item_ids))
        if ids:
            self._delete(ids)

    # -- reading ---------------------------------------------------------------------------------------------
    def fetch(self, item_ids: Iterable[str]) -> dict[str, Ad]:
        """The indexed version of these listings, by id, whatever their language; unknown ids are left out.

        Realtime (no refresh needed): the stream indexer patches an ItemUpdated onto what is indexed.
        """
        ids = list(dict.fromkeys(item_ids))
        return self._fetch(ids) if ids else {}

    @abc.abstractmethod
    def search(self, request: SearchRequest) -> SearchResponse:
        """One page of results, the exact total, facets over every match, did-you-mean and the next cursor."""

    def autocomplete(self, prefix: str, language: str, limit: int = 10, lat: float | None = None,
                     lon: float | None = None) -> list[Suggestion]:
        """Distinct titles completing ``prefix`` (the last word as a prefix), nearest first given lat/lon."""
        return self._autocomplete(AutocompleteRequest(prefix, language, limit, lat, lon))

    # -- what each engine provides ---------------------------------------------------------------------------
    @abc.abstractmethod
    def _write(self, by_language: dict[str, list[Ad]]) -> None:
        """Upsert these ads into their language's index and drop them from any other language index."""

    @abc.abstractmethod
    def _delete(self, item_ids: list[str]) -> None:
        ...

    @abc.abstractmethod
    def _fetch(self, item_ids: list[str]) -> dict[str, Ad]:
        ...

    @abc.abstractmethod
    def _autocomplete(self, request: AutocompleteRequest) -> list[Suggestion]:
        ...


def dedupe_suggestions(candidates: Iterable[Suggestion], limit: int) -> list[Suggestion]:
    """First occurrence of each title (case- and space-insensitive), at most ``limit``."""
    seen: set[str] = set()
    out: list[Suggestion] = []
    for suggestion in candidates:
        key = " ".join(suggestion.text.casefold().split())
        if key not in seen:
            seen.add(key)
            out.append(suggestion)
            if len(out) == limit:
                break
    return out


def bounded_edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (a transposition costs 1, as in OpenSearch), or ``limit + 1`` if above."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1] if previous[-1] <= limit else limit + 1
