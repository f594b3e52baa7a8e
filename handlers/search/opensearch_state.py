"""Listing states on OpenSearch: read-merge-write guarded by optimistic concurrency, documents by external version.

Several indexer Lambdas (one per shard) write at once, and one listing's events sit on different shards, so two
of them can merge into the same listing at the same moment. The rules (:mod:`.backend` drives them):

* **State documents** (``<ns>listing_state``, ``_id = item_id``, the :class:`~.listings.ListingState` stored
  whole) are read with a realtime ``mget`` that returns their ``_seq_no``/``_primary_term``, merged in Python,
  and written back only if nobody wrote in between (``if_seq_no``/``if_primary_term``; a new one with
  ``op_type=create``). A 409 means another writer won: the listing is re-read and merged again. External
  versioning alone cannot do this — an early update must be *combined* with its listing, not just outranked.
* **Search documents** are derived from the committed state and written with ``version_type=external_gte`` and
  the state's version (its highest event version): a slower writer holding an older state is refused (409,
  ignored), replays rewrite the same version harmlessly. Removing a document (sold, deleted, moved to another
  language or category index) is a delete with the same external version; the index remembers it for
  ``gc_deletes`` (1 h, :mod:`.opensearch_schema`), so a stale write cannot bring it back either.
* :func:`purge` deletes, by query, the states that are not live and whose last event is past the retention.

Two bulk calls per batch after one ``mget``: the states, then the documents of the states that were written.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from handlers.search.backend import ApplyResult, Plan
from handlers.search.errors import BackendUnavailable
from handlers.search.listings import ListingState
from handlers.search.opensearch_client import NAME, Cluster
from handlers.search.opensearch_schema import to_document
from handlers.search.opensearch_writes import MAX_CHUNK_BYTES

CONFLICT = 409


def read(cluster: Cluster, item_ids: list[str]) -> dict[str, tuple[ListingState, tuple[int, int]]]:
    """States by id with their (seq_no, primary_term) — realtime: sees writes not yet refreshed."""
    index = cluster.resolve(cluster.names.state_alias())
    found = cluster.call("mget states", cluster.client.mget, index=index, body={"ids": item_ids}, realtime=True)
    return {doc["_id"]: (ListingState.from_dict(doc["_source"]["state"]), (doc["_seq_no"], doc["_primary_term"]))
            for doc in found["docs"] if doc.get("found")}


def bulk_items(cluster: Cluster, actions: Iterable[dict[str, Any]]) -> Iterator[tuple[bool, str, dict[str, Any]]]:
    """(ok, op, item) per action, in order; connection trouble is an outage for the whole call."""
    from opensearchpy import exceptions as os_errors
    from opensearchpy.helpers import streaming_bulk

    try:
        for ok, item in streaming_bulk(cluster.client, actions, chunk_size=cluster.config.bulk_chunk,
                                       max_chunk_bytes=MAX_CHUNK_BYTES, raise_on_error=False, raise_on_exception=False,
                                       max_retries=3, initial_backoff=1):
            op, body = next(iter(item.items()))
            status = body.get("status")
            if isinstance(status, int) and (status >= 500 or status == 429) and not ok:
                raise BackendUnavailable(NAME, f"bulk {op}: {status} {body.get('error')}")
            yield ok, op, body
    except (os_errors.ConnectionError, os_errors.ConnectionTimeout) as exc:
        raise BackendUnavailable(NAME, f"bulk: {exc}") from None


def _reason(body: dict[str, Any]) -> str:
    error = body.get("error")
    reason = error.get("reason", str(error)) if isinstance(error, dict) else str(error)
    return f"{body.get('status')}: {reason}"


def commit(cluster: Cluster, plans: list[Plan], result: ApplyResult) -> list[str]:
    """Write the changed states (guarded), then the search documents of every plan whose state stands."""
    state_index = cluster.resolve(cluster.names.state_alias())
    changed = [plan for plan in plans if plan.changed]
    conflicts: list[str] = []
    refused: set[str] = set()
    for plan, (ok, _op, body) in zip(changed, bulk_items(cluster, (_state_action(state_index, p) for p in changed))):
        if ok:
            continue
        if body.get("status") == CONFLICT:
            conflicts.append(plan.item_id)
        else:
            refused.add(plan.item_id)
            result.failures.append((plan.item_id, f"state {_reason(body)}"))
    skip = set(conflicts) | refused
    standing = [plan for plan in plans if plan.item_id not in skip]
    actions = [action for plan in standing for action in _document_actions(cluster, plan)]
    for action, (ok, op, body) in zip(actions, bulk_items(cluster, actions)):
        if not ok and body.get("status") not in (CONFLICT, 404):  # older than what is there / nothing to delete
            result.failures.append((action["_id"], f"{op} {_reason(body)}"))
    return conflicts


def _state_action(index: str, plan: Plan) -> dict[str, Any]:
    state = plan.new
    source = {"item_id": state.item_id, "live": state.live, "last_at": state.last_at, "state": state.to_dict()}
    action: dict[str, Any] = {"_index": index, "_id": state.item_id, "_source": source}
    if plan.token is None:
        return {**action, "_op_type": "create"}  # fails with 409 if another writer created it first
    seq_no, primary_term = plan.token  # type: ignore[misc]
    return {**action, "_op_type": "index", "if_seq_no": seq_no, "if_primary_term": primary_term}


def _document_actions(cluster: Cluster, plan: Plan) -> list[dict[str, Any]]:
    version = {"version": plan.new.version, "version_type": "external_gte"}
    placed, before = plan.new.placed, plan.old.placed if plan.old is not None else None
    actions = []
    if plan.ad is not None and placed is not None:
        actions.append({"_op_type": "index", "_index": cluster.resolve(placed), "_id": plan.item_id,
                        "_source": to_document(plan.ad), **version})
    if before is not None and before != placed:
        actions.append({"_op_type": "delete", "_index": cluster.resolve(before), "_id": plan.item_id, **version})
    return actions


def purge(cluster: Cluster, before: float) -> int:
    """Delete the states that are not live and whose last event is older than ``before``; returns how many."""
    query = {"bool": {"filter": [{"term": {"live": False}}, {"range": {"last_at": {"lt": before}}}]}}
    done = cluster.call("purge states", cluster.client.delete_by_query, index=cluster.names.state_alias(),
                        body={"query": query}, conflicts="proceed", refresh=True)
    return int(done.get("deleted", 0))
