"""One language's tantivy index: its analysers, its lazily opened writer, its searcher and its vocabulary.

Writes are committed per ``index()``/``remove()`` call of the backend (durable, like an acknowledged bulk) and
the searcher is reloaded right after, so ``refresh()`` has nothing of its own left to do — except to pick up
what *another process* committed: the local stage's API worker reads the directory its indexer writes.
A writer is opened only when something is written: tantivy allows one writer per directory, and a read-only
API worker beside the indexer must not hold it. The backend writes under :attr:`LanguageIndex.lock`.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterable

import orjson
import tantivy

from handlers.search.compounds import index_text
from handlers.search.model import CATEGORY_CODE, Ad, Hit
from handlers.search.tantivy_schema import analyzer, item_key, prepare, schema


class LanguageIndex:
    """One language's index: in memory (``path=None``) or in a directory, opened or created."""

    def __init__(self, language: str, path: Path | None, heap_bytes: int) -> None:
        self.language = language
        self.schema = schema()
        if path is None:
            self.index = tantivy.Index(self.schema)
        else:
            path.mkdir(parents=True, exist_ok=True)
            self.index = tantivy.Index(self.schema, path=str(path), reuse=True)
        self.text_analyzer = analyzer(language)
        self.plain_analyzer = analyzer(None)
        self.index.register_tokenizer("letgo_text", self.text_analyzer)
        self.index.register_tokenizer("letgo_plain", self.plain_analyzer)
        self.index.config_reader(reload_policy="manual")
        self._heap_bytes = heap_bytes
        self._writer: Any = None
        self._dirty = False
        self.lock = threading.Lock()
        self._vocabulary: dict[str, list[tuple[str, int]]] = {}
        self.searcher: Any = self.index.searcher()

    @property
    def writer(self) -> Any:
        if self._writer is None:
            self._writer = self.index.writer(heap_size=self._heap_bytes, num_threads=1)
        return self._writer

    # -- writing ---------------------------------------------------------------------------------------------
    def delete(self, item_ids: Iterable[str]) -> None:
        # The searcher is reloaded after every commit, so it knows every committed id (and a few deleted ones
        # still counted until merged: a harmless extra delete). No writer is opened for an index without them.
        for item_id in item_ids:
            if self.searcher.doc_freq("item_id", item_id):
                self.writer.delete_documents_by_term("item_id", item_id)
                self._dirty = True

    def clear(self) -> None:
        self.writer.delete_all_documents()
        self._dirty = True

    def add(self, ad: Ad) -> None:
        title, description = prepare(self.language, ad.title), prepare(self.language, ad.description)
        doc = tantivy.Document()
        doc.add_text("item_id", ad.item_id)
        doc.add_text("title", index_text(self.language, title))  # + the heads of Dutch compounds
        doc.add_text("title_plain", title)
        doc.add_text("description", description)
        doc.add_text("country", ad.country)
        doc.add_integer("category", CATEGORY_CODE[ad.category])
        doc.add_float("price", ad.price)
        doc.add_float("lat", ad.lat)
        doc.add_float("lon", ad.lon)
        doc.add_float("listed_at", ad.listed_at)
        doc.add_integer("key", item_key(ad.item_id))
        doc.add_bytes("source", orjson.dumps(ad.to_dict()))
        self.writer.add_document(doc)
        self._dirty = True

    def commit(self) -> None:
        """Commit pending writes; either way, open a searcher on the latest commit — another process (the
        indexer beside a read-only API worker) may have committed since."""
        if self._dirty and self._writer is not None:
            self._writer.commit()
            self._dirty = False
        self.reload()

    def reload(self) -> None:
        self.index.reload()
        self.searcher = self.index.searcher()
        self._vocabulary = {}

    def close(self) -> None:
        if self._writer is not None:
            self._writer.commit()
            self._writer.wait_merging_threads()
            self._writer = None

    # -- reading ---------------------------------------------------------------------------------------------
    def source(self, address: Any) -> dict[str, Any]:
        """The stored ad of one document, as :meth:`Ad.to_dict` wrote it."""
        return orjson.loads(self.searcher.doc(address).get_first("source"))

    def hit(self, address: Any, distance: float | None = None, score: float | None = None,
            approximate: bool = False) -> Hit:
        return Hit(Ad.from_dict(self.source(address)), distance, score, approximate)

    def ads(self, item_ids: list[str]) -> list[Ad]:
        """The listings with these ids that this index holds."""
        query = tantivy.Query.term_set_query(self.schema, "item_id", item_ids)
        return [self.hit(address).ad for _, address in self.searcher.search(query, limit=len(item_ids)).hits]

    def vocabulary(self, prefix: str) -> list[tuple[str, int]]:
        """Indexed plain title terms starting with ``prefix``, with document frequencies (cached per refresh)."""
        if prefix not in self._vocabulary:
            self._vocabulary[prefix] = self.searcher.terms_with_prefix("title_plain", prefix)
        return self._vocabulary[prefix]
