"""The embedded engine's store of listing states (:mod:`.listings`): one small tantivy index beside the languages.

Why a separate index: the language indices hold only searchable ads, so a tombstone or an early update
costs a search nothing (no "live" filter on every query, no ghost terms in the vocabulary did-you-mean reads).
A state is stored whole as JSON, found by its ``item_id``; ``last_at`` (a fast, indexed float) lets
:meth:`StateIndex.purge` drop the tombstones and partial states past their retention with one range query.

Concurrency: the backend holds one lock around read-merge-write (:meth:`TantivyBackend.apply`), so there is
no token to check here; the local stage has one indexer process (the API worker only reads).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import orjson
import tantivy

from handlers.search.listings import ListingState

NAME = "listing_state"


def _schema() -> Any:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("item_id", tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("live", indexed=True, fast=True)
    sb.add_float_field("last_at", indexed=True, fast=True)
    sb.add_bytes_field("state", stored=True)
    return sb.build()


class StateIndex:
    """Listing states by item id, in memory (``path=None``) or in a directory."""

    def __init__(self, path: Path | None, heap_bytes: int) -> None:
        self.schema = _schema()
        if path is None:
            self.index = tantivy.Index(self.schema)
        else:
            path.mkdir(parents=True, exist_ok=True)
            self.index = tantivy.Index(self.schema, path=str(path), reuse=True)
        self.index.config_reader(reload_policy="manual")
        self._heap = heap_bytes
        self._writer: Any = None
        self._dirty = False
        self.searcher: Any = self.index.searcher()

    @property
    def writer(self) -> Any:
        if self._writer is None:
            self._writer = self.index.writer(heap_size=self._heap, num_threads=1)
        return self._writer

    def read(self, item_ids: list[str]) -> dict[str, ListingState]:
        if not item_ids or not self.searcher.num_docs:
            return {}
        query = tantivy.Query.term_set_query(self.schema, "item_id", item_ids)
        found = {}
        for _, address in self.searcher.search(query, limit=len(item_ids)).hits:
            state = ListingState.from_dict(orjson.loads(self.searcher.doc(address).get_first("state")))
            found[state.item_id] = state
        return found

    def write(self, states: Iterable[ListingState]) -> None:
        for state in states:
            if self.searcher.doc_freq("item_id", state.item_id):
                self.writer.delete_documents_by_term("item_id", state.item_id)
            doc = tantivy.Document()
            doc.add_text("item_id", state.item_id)
            doc.add_integer("live", int(state.live))
            doc.add_float("last_at", state.last_at)
            doc.add_bytes("state", orjson.dumps(state.to_dict()))
            self.writer.add_document(doc)
            self._dirty = True

    def purge(self, before: float) -> int:
        """Delete states that are not live and whose last event is older than ``before``."""
        query = tantivy.Query.boolean_query([
            (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "live", 0)),
            (tantivy.Occur.Must, tantivy.Query.range_query(self.schema, "last_at", tantivy.FieldType.Float, None,
                                                           before, include_upper=False))])
        count = self.searcher.search(query, limit=1, count=True).count if self.searcher.num_docs else 0
        if count:
            self.writer.delete_documents_by_query(query)
            self._dirty = True
        return count

    def clear(self) -> None:
        self.writer.delete_all_documents()
        self._dirty = True

    def commit(self) -> None:
        if self._dirty and self._writer is not None:
            self._writer.commit()
            self._dirty = False
        self.index.reload()
        self.searcher = self.index.searcher()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.commit()
            self._writer.wait_merging_threads()
            self._writer = None
