"""Writing listings to OpenSearch and reading them back by id: bulk upserts and deletes, realtime fetch.

``upsert`` is one bulk per chunk with ``_id = item_id``. Before it, one realtime ``mget`` finds ads that
currently live in *another* index (their language or split category changed) and the bulk deletes them there
first, so a listing is never found twice. Per-item refusals come back as
:class:`~handlers.search.errors.IndexingFailed` after the rest is written; deleting what is not there is
fine (idempotent), and a cluster that cannot be reached is
:class:`~handlers.search.errors.BackendUnavailable` for the whole call.

``fetch`` is a realtime ``mget`` over every write index (it sees writes not yet refreshed): the stream
indexer patches an ``ItemUpdated`` onto what is indexed. It asks every concrete write index, not the read
alias: a GET by id names one index, and the read alias spans several once a category is split.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from handlers.search.errors import BackendUnavailable, IndexingFailed
from handlers.search.model import Ad
from handlers.search.opensearch_client import NAME, Cluster
from handlers.search.opensearch_schema import from_document, to_document

MAX_CHUNK_BYTES = 5 * 1024 * 1024


def bulk(cluster: Cluster, actions: Iterable[dict[str, Any]]) -> int:
    """Stream ``actions`` in chunks; returns how many documents were written (deletes not counted)."""
    from opensearchpy import exceptions as os_errors
    from opensearchpy.helpers import streaming_bulk

    failures: list[tuple[str, str]] = []
    ok = 0
    try:
        for success, item in streaming_bulk(cluster.client, actions, chunk_size=cluster.config.bulk_chunk,
                                            max_chunk_bytes=MAX_CHUNK_BYTES, raise_on_error=False,
                                            max_retries=3, initial_backoff=1):
            op, result = next(iter(item.items()))
            if success:
                ok += op != "delete"
            elif not (op == "delete" and result.get("status") == 404):
                error = result.get("error")
                reason = error.get("reason", str(error)) if isinstance(error, dict) else str(error)
                failures.append((result.get("_id", "?"), f"{op} {result.get('status')}: {reason}"))
    except (os_errors.ConnectionError, os_errors.ConnectionTimeout) as exc:
        raise BackendUnavailable(NAME, f"bulk: {exc}") from None
    if failures:
        raise IndexingFailed(tuple(failures), ok)
    return ok


def upsert(cluster: Cluster, by_language: dict[str, list[Ad]]) -> None:
    """Index each ad through its write alias, deleting it first from the index it lives in if that differs."""
    targets = {ad.item_id: (ad, cluster.target(ad, language)) for language, ads in by_language.items() for ad in ads}
    where = _locate(cluster, list(targets))
    concrete = cluster.write_indices()

    def actions() -> Iterator[dict[str, Any]]:
        for item_id, (ad, target) in targets.items():
            current = where.get(item_id)
            if current is not None and current != concrete.get(target):
                yield {"_op_type": "delete", "_index": current, "_id": item_id}
            yield {"_op_type": "index", "_index": target, "_id": item_id, "_source": to_document(ad)}

    bulk(cluster, actions())


def delete(cluster: Cluster, item_ids: list[str]) -> None:
    where = _locate(cluster, item_ids)
    bulk(cluster, ({"_op_type": "delete", "_index": index, "_id": item_id} for item_id, index in where.items()))


def fetch(cluster: Cluster, item_ids: list[str]) -> dict[str, Ad]:
    return {doc["_id"]: from_document(doc["_source"]) for doc in _mget(cluster, item_ids, source=True)}


def refresh(cluster: Cluster) -> None:
    """Make everything written so far searchable (OpenSearch also does it by itself every second)."""
    cluster.call("refresh", cluster.client.indices.refresh, index=",".join(cluster.all_write_aliases()),
                 ignore_unavailable=True)


def _locate(cluster: Cluster, item_ids: list[str]) -> dict[str, str]:
    """Which concrete index holds each id right now."""
    return {doc["_id"]: doc["_index"] for doc in _mget(cluster, item_ids, source=False)}


def _mget(cluster: Cluster, item_ids: list[str], source: bool) -> list[dict[str, Any]]:
    """The documents with these ids in every write index (realtime GET: sees writes not yet refreshed)."""
    for attempt in (0, 1):
        concrete = sorted(set(cluster.write_indices(refresh=attempt == 1).values()))
        if not concrete:
            return []
        docs = [{"_index": index, "_id": item_id} for index in concrete for item_id in item_ids]
        found = cluster.call("mget", cluster.client.mget, body={"docs": docs}, _source=source, realtime=True)
        if any("error" in doc for doc in found["docs"]) and attempt == 0:
            continue  # an index behind the cache is gone (a reindex elsewhere): resolve again
        return [doc for doc in found["docs"] if doc.get("found")]
    return []
