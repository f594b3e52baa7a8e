"""The production backend: Amazon OpenSearch Service (plain HTTP for a local or test URL).

A thin facade: :class:`OpenSearchBackend` is the :class:`~handlers.search.backend.SearchBackend` the indexer,
the API and the CLI hold, and hands each job to the module that does it —

* :mod:`.opensearch_config` — where the cluster is and every name in it (:class:`OpenSearchConfig`,
  :class:`IndexNames`); built from the environment by :func:`handlers.search.factory.open_backend`;
* :mod:`.opensearch_client` — the connection (SigV4, errors mapped to the search errors, write targets);
* :mod:`.opensearch_schema` — the index template per language and the document shape of an ad;
* :mod:`.opensearch_admin` — setup (templates, versioned indices, aliases), reindex with an alias swap, drop;
* :mod:`.opensearch_writes` — bulk upserts and deletes, realtime fetch, refresh;
* :mod:`.opensearch_state` — listing states: optimistic concurrency on the state, external versions on the ads;
* :mod:`.opensearch_queries` — request -> query DSL, response -> :class:`~handlers.search.model.SearchResponse`.

:class:`OpenSearchConfig` is re-exported: a backend is built from one.
"""
from __future__ import annotations

from typing import Any, Iterable

from handlers.search import opensearch_admin as admin
from handlers.search import opensearch_queries as queries
from handlers.search import opensearch_state as states
from handlers.search import opensearch_writes as writes
from handlers.search.backend import ApplyResult, Plan, Ranking, SearchBackend
from handlers.search.languages import index_language
from handlers.search.listings import Change, ListingState
from handlers.search.model import Ad, AutocompleteRequest, Cursor, SearchRequest, SearchResponse, Suggestion
from handlers.search.opensearch_client import NAME, Cluster
from handlers.search.opensearch_config import OpenSearchConfig

__all__ = ["OpenSearchBackend", "OpenSearchConfig"]


class OpenSearchBackend(SearchBackend):
    name = NAME

    def __init__(self, config: OpenSearchConfig, *, ranking: Ranking | None = None, client: Any = None) -> None:
        self.config = config
        self.ranking = ranking or Ranking()
        self.cluster = Cluster(config, client)
        self.names = self.cluster.names

    @property
    def client(self) -> Any:
        """The opensearch-py client (``letgo search setup`` applies the security roles through it)."""
        return self.cluster.client

    # -- lifecycle and administration ------------------------------------------------------------------------
    def setup(self) -> None:
        admin.setup(self.cluster)

    def refresh(self) -> None:
        writes.refresh(self.cluster)

    def close(self) -> None:
        self.cluster.close()

    def reindex(self, language: str, ads: Iterable[Ad] | None = None, *, category: str | None = None,
                delete_old: bool = True) -> str:
        """Move one alias to a fresh version (see :func:`.opensearch_admin.reindex`); returns the new index."""
        return admin.reindex(self.cluster, language, ads, category=category, delete_old=delete_old)

    def rebuild(self, changes: Iterable[Change], chunk: int = 5000) -> ApplyResult:
        """Every index rebuilt from these changes in new versions, swapped in atomically (see
        :func:`.opensearch_admin.rebuild`): searches never see a half-built index."""
        def fill(shadow: Any) -> ApplyResult:
            builder = OpenSearchBackend(self.config, ranking=self.ranking, client=self.client)
            builder.cluster = shadow
            return builder._fill(changes, chunk)  # the new versions start empty

        return admin.rebuild(self.cluster, fill)

    def drop(self) -> None:
        """Delete every index and template of this namespace. For tests and throw-away stages only."""
        admin.drop(self.cluster)

    # -- writing ---------------------------------------------------------------------------------------------
    def _write(self, by_language: dict[str, list[Ad]]) -> None:
        writes.upsert(self.cluster, by_language)

    def _delete(self, item_ids: list[str]) -> None:
        writes.delete(self.cluster, item_ids)

    def _fetch(self, item_ids: list[str]) -> dict[str, Ad]:
        return writes.fetch(self.cluster, item_ids)

    # -- listing states --------------------------------------------------------------------------------------
    def _placement(self, ad: Ad) -> str:
        return self.cluster.target(ad, index_language(ad.language, ad.country))

    def _read_states(self, item_ids: list[str]) -> dict[str, tuple[ListingState, object]]:
        return states.read(self.cluster, item_ids)  # type: ignore[return-value]

    def _commit(self, plans: list[Plan], result: ApplyResult) -> list[str]:
        return states.commit(self.cluster, plans, result)

    def _purge(self, before: float) -> int:
        return states.purge(self.cluster, before)

    # -- reading ---------------------------------------------------------------------------------------------
    def search_body(self, request: SearchRequest, cursor: Cursor | None, origin: float) -> dict[str, Any]:
        """The request body for one search (public so it can be inspected and logged)."""
        return queries.search_body(request, cursor, origin, self.ranking)

    def search(self, request: SearchRequest) -> SearchResponse:
        return queries.search(self.cluster, request, self.ranking)

    def _autocomplete(self, request: AutocompleteRequest) -> list[Suggestion]:
        return queries.autocomplete(self.cluster, request, self.ranking)
