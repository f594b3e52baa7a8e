"""The embedded search engine of the local stage: tantivy (Rust, in-process), one index per language.

Why tantivy: a real inverted index with BM25, per-language Snowball stemmers, stop words, fuzzy term
automata and fast (columnar) fields, without a JVM or a server. It has no geo type, so geo is done the
way a geo-less engine must: a lat/lon bounding box as range queries on fast fields narrows the candidates,
then the exact haversine (:mod:`handlers.search.geo`, the radius Lucene uses) decides.

A thin facade: :class:`TantivyBackend` is the :class:`~handlers.search.backend.SearchBackend` the local
stage, the API and the tests hold; it opens one index per language on first use and hands each job on —

* :mod:`.tantivy_schema` — the fields and the analysers (mirroring the OpenSearch templates);
* :mod:`.tantivy_index` — one language's index: writer, commits, searcher, vocabulary;
* :mod:`.tantivy_queries` — request -> tantivy queries + numpy over fast fields -> the response.

* :mod:`.tantivy_state` — the listing states (tombstones, early updates) the stream's changes merge into.

Writes are committed per ``index()``/``remove()``/``apply()`` call (durable, like an acknowledged bulk) and the
searcher is reloaded right after. ``apply`` reads, merges and writes under one lock (the engine's way of keeping
writers apart; OpenSearch uses optimistic concurrency). Index directories are named like the OpenSearch concrete
indices (``classified_ads_es_v2``, :data:`SCHEMA_VERSION`).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable

from handlers.search import tantivy_queries as queries
from handlers.search.backend import ApplyResult, Plan, Ranking, SearchBackend
from handlers.search.languages import SUPPORTED
from handlers.search.listings import Change, ListingState
from handlers.search.model import Ad, AutocompleteRequest, SearchRequest, SearchResponse, Suggestion
from handlers.search.tantivy_index import LanguageIndex
from handlers.search.tantivy_schema import SCHEMA_VERSION
from handlers.search.tantivy_state import NAME as STATE_NAME
from handlers.search.tantivy_state import StateIndex

__all__ = ["SCHEMA_VERSION", "TantivyBackend"]


class TantivyBackend(SearchBackend):
    """Embedded backend. ``path=None`` keeps every index in memory (tests); else one directory per language."""

    name = "tantivy"

    def __init__(self, path: Path | str | None = None, *, ranking: Ranking | None = None,
                 writer_heap_bytes: int = 32_000_000) -> None:
        self.path = Path(path) if path is not None else None
        self.ranking = ranking or Ranking()
        self._heap = writer_heap_bytes
        self._indices: dict[str, LanguageIndex] = {}
        self._state: StateIndex | None = None
        self._lock = threading.Lock()
        self._apply_lock = threading.RLock()  # read-merge-write of listing states, one writer at a time

    # -- lifecycle -------------------------------------------------------------------------------------------
    def _language(self, language: str) -> LanguageIndex:
        index = self._indices.get(language)
        if index is None:
            with self._lock:
                index = self._indices.get(language)
                if index is None:
                    where = None if self.path is None else self.path / f"classified_ads_{language}_v{SCHEMA_VERSION}"
                    index = self._indices[language] = LanguageIndex(language, where, self._heap)
        return index

    @property
    def state_index(self) -> StateIndex:
        if self._state is None:
            with self._lock:
                if self._state is None:
                    where = None if self.path is None else self.path / f"{STATE_NAME}_v{SCHEMA_VERSION}"
                    self._state = StateIndex(where, self._heap)
        return self._state

    def setup(self) -> None:
        for language in SUPPORTED:
            self._language(language)
        _ = self.state_index

    def refresh(self) -> None:
        for index in list(self._indices.values()):
            with index.lock:
                index.commit()
        if self._state is not None:
            with self._apply_lock:
                self._state.commit()

    def close(self) -> None:
        for index in list(self._indices.values()):
            with index.lock:
                index.close()
        self._indices = {}
        if self._state is not None:
            with self._apply_lock:
                self._state.close()
            self._state = None

    # -- writing ---------------------------------------------------------------------------------------------
    def _write(self, by_language: dict[str, list[Ad]]) -> None:
        for language in SUPPORTED:
            ads = by_language.get(language, [])
            moved = [ad.item_id for other, group in by_language.items() if other != language for ad in group]
            if not ads and not moved:
                continue
            index = self._language(language)
            with index.lock:
                index.delete([ad.item_id for ad in ads] + moved)
                for ad in ads:
                    index.add(ad)
                index.commit()

    def _delete(self, item_ids: list[str]) -> None:
        for language in SUPPORTED:
            index = self._language(language)
            with index.lock:
                index.delete(item_ids)
                index.commit()

    # -- listing states ----------------------------------------------------------------------------------------
    def apply(self, changes: Iterable[Change]) -> ApplyResult:
        with self._apply_lock:  # nothing can change a state between its read and its write
            return super().apply(changes)

    def _read_states(self, item_ids: list[str]) -> dict[str, tuple[ListingState, object]]:
        return {item_id: (state, None) for item_id, state in self.state_index.read(item_ids).items()}

    def _commit(self, plans: list[Plan], result: ApplyResult) -> list[str]:
        store = self.state_index
        store.write(plan.new for plan in plans if plan.changed)
        store.commit()
        by_language: dict[str, list[Ad]] = {}
        for plan in plans:
            if plan.ad is not None and plan.new.placed is not None:
                by_language.setdefault(plan.new.placed, []).append(plan.ad)
        if by_language:
            self._write(by_language)  # also drops each ad from any other language index
        hidden = [plan.item_id for plan in plans if plan.ad is None]
        if hidden:
            self._delete(hidden)
        return []

    def _purge(self, before: float) -> int:
        with self._apply_lock:
            purged = self.state_index.purge(before)
            self.state_index.commit()
            return purged

    def rebuild(self, changes: Iterable[Change], chunk: int = 5000) -> ApplyResult:
        """Clear every index in place, then fill it from these changes (a local index: nobody searches mid-way)."""
        self._clear()
        return self._fill(changes, chunk)

    def _clear(self) -> None:
        with self._apply_lock:
            self.state_index.clear()
            self.state_index.commit()
            for language in SUPPORTED:
                index = self._language(language)
                with index.lock:
                    index.clear()
                    index.commit()

    # -- reading ---------------------------------------------------------------------------------------------
    def _fetch(self, item_ids: list[str]) -> dict[str, Ad]:
        return {ad.item_id: ad for language in SUPPORTED for ad in self._language(language).ads(item_ids)}

    def search(self, request: SearchRequest) -> SearchResponse:
        return queries.search(self._language(request.language), request, self.ranking, self.name)

    def _autocomplete(self, request: AutocompleteRequest) -> list[Suggestion]:
        return queries.autocomplete(self._language(request.language), request, self.ranking)
