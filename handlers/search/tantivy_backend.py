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

Writes are committed per ``index()``/``remove()`` call (durable, like an acknowledged bulk) and the searcher
is reloaded right after. Index directories are named like the OpenSearch concrete indices
(``classified_ads_es_v1``, :data:`SCHEMA_VERSION`).
"""
from __future__ import annotations

import threading
from pathlib import Path

from handlers.search import tantivy_queries as queries
from handlers.search.backend import Ranking, SearchBackend
from handlers.search.languages import SUPPORTED
from handlers.search.model import Ad, AutocompleteRequest, SearchRequest, SearchResponse, Suggestion
from handlers.search.tantivy_index import LanguageIndex
from handlers.search.tantivy_schema import SCHEMA_VERSION

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
        self._lock = threading.Lock()

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

    def setup(self) -> None:
        for language in SUPPORTED:
            self._language(language)

    def refresh(self) -> None:
        for index in list(self._indices.values()):
            with index.lock:
                index.commit()

    def close(self) -> None:
        for index in list(self._indices.values()):
            with index.lock:
                index.close()
        self._indices = {}

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

    # -- reading ---------------------------------------------------------------------------------------------
    def _fetch(self, item_ids: list[str]) -> dict[str, Ad]:
        return {ad.item_id: ad for language in SUPPORTED for ad in self._language(language).ads(item_ids)}

    def search(self, request: SearchRequest) -> SearchResponse:
        return queries.search(self._language(request.language), request, self.ranking, self.name)

    def _autocomplete(self, request: AutocompleteRequest) -> list[Suggestion]:
        return queries.autocomplete(self._language(request.language), request, self.ranking)
