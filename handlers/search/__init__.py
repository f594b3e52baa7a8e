"""Search (system 3): classified ads by text, place, category and price, one index per language.

The pieces, each usable on its own:

* :mod:`.model` — typed values: :class:`Ad`, :class:`SearchRequest` (validated bounds; ``from_params`` for
  query strings), :class:`SearchResponse`, :class:`Suggestion`, the cursor.
* :mod:`.languages` — which language index serves a request (explicit > user setting > Accept-Language >
  country, with a stated fallback) and which one a listing goes to.
* :mod:`.backend` — the interface (:class:`SearchBackend`) and the rules both engines share.
* :mod:`.tantivy_backend` — embedded engine for the local stage; :mod:`.opensearch_backend` — Amazon
  OpenSearch Service in AWS (each a thin facade over ``tantivy_*`` / ``opensearch_*`` modules with one job
  each). One contract test suite holds them to the same answers.
* :func:`open_backend` (:mod:`.factory`) — the backend the environment names (``LETGO_SEARCH_BACKEND``),
  with one strict set of rules for the indexer, the API and the CLI.

A request travels: API parameters -> :func:`choose_language` -> :meth:`SearchRequest.from_params`
(400 on :class:`InvalidRequest`) -> ``backend.search`` -> ``response.to_dict()`` + ``choice.to_dict()``.
A listing travels: ItemListed -> :meth:`Ad.from_item_listed` (ItemUpdated: ``backend.fetch`` then
:meth:`Ad.updated`) -> ``backend.index([...])``; ItemSold / ItemDeleted -> ``backend.remove([...])``.
"""
from __future__ import annotations

from handlers.search.backend import Ranking, SearchBackend
from handlers.search.errors import (BackendUnavailable, IndexingFailed, InvalidAd, InvalidRequest,
                                    SearchError)
from handlers.search.factory import open_backend
from handlers.search.languages import SUPPORTED, LanguageChoice, Reason, choose_language, index_language
from handlers.search.model import (Ad, AutocompleteRequest, Bucket, Facets, Hit, SearchRequest, SearchResponse, Sort,
                                   Suggestion)

__all__ = [
    "Ad", "AutocompleteRequest", "BackendUnavailable", "Bucket", "Facets", "Hit", "IndexingFailed", "InvalidAd",
    "InvalidRequest", "LanguageChoice", "Ranking", "Reason", "SUPPORTED", "SearchBackend", "SearchError",
    "SearchRequest", "SearchResponse", "Sort", "Suggestion", "choose_language", "index_language", "open_backend",
]
