"""Search (system 3): classified ads by text, place, category and price, one index per language.

The pieces, each usable on its own:

* :mod:`.model` — typed values: :class:`Ad`, :class:`SearchRequest` (validated bounds; ``from_params`` for
  query strings), :class:`SearchResponse`, :class:`Suggestion`, the cursor.
* :mod:`.languages` — which language index serves a request (explicit > user setting > Accept-Language >
  country, with a stated fallback) and which one a listing goes to.
* :mod:`.backend` — the interface (:class:`SearchBackend`) and the rules both engines share.
* :mod:`.tantivy_backend` — embedded engine for the local stage; :mod:`.opensearch_backend` — Amazon
  OpenSearch Service in AWS. One contract test suite holds them to the same answers.
* :func:`open_backend` — the backend the environment asks for (``LETGO_SEARCH_BACKEND``).

A request travels: API parameters -> :func:`choose_language` -> :meth:`SearchRequest.from_params`
(400 on :class:`InvalidRequest`) -> ``backend.search`` -> ``response.to_dict()`` + ``choice.to_dict()``.
A listing travels: ItemListed -> :meth:`Ad.from_item_listed` (ItemUpdated: ``backend.fetch`` then
:meth:`Ad.updated`) -> ``backend.index([...])``; ItemSold / ItemDeleted -> ``backend.remove([...])``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from handlers.search.backend import Ranking, SearchBackend
from handlers.search.errors import (BackendUnavailable, IndexingFailed, InvalidAd, InvalidRequest,
                                    SearchError)
from handlers.search.languages import SUPPORTED, LanguageChoice, Reason, choose_language, index_language
from handlers.search.model import (Ad, AutocompleteRequest, Bucket, Facets, Hit, SearchRequest, SearchResponse, Sort,
                                   Suggestion)

__all__ = [
    "Ad", "AutocompleteRequest", "BackendUnavailable", "Bucket", "Facets", "Hit", "IndexingFailed", "InvalidAd",
    "InvalidRequest", "LanguageChoice", "Ranking", "Reason", "SUPPORTED", "SearchBackend", "SearchError",
    "SearchRequest", "SearchResponse", "Sort", "Suggestion", "choose_language", "index_language", "open_backend",
]


def open_backend(env: Mapping[str, str] = os.environ) -> SearchBackend:
    """The configured backend, not yet set up (call ``setup()`` or use it as a context manager).

    ``LETGO_SEARCH_BACKEND=opensearch`` (the default when ``LETGO_OPENSEARCH_URL`` is set; see
    :meth:`OpenSearchConfig.from_env`) or ``tantivy`` with ``LETGO_SEARCH_PATH`` (a directory; unset =
    in memory). Engines are imported only when chosen: the API image needs only the one it runs.
    """
    kind = env.get("LETGO_SEARCH_BACKEND") or ("opensearch" if env.get("LETGO_OPENSEARCH_URL") else "tantivy")
    if kind == "opensearch":
        from handlers.search.opensearch_backend import OpenSearchBackend, OpenSearchConfig

        return OpenSearchBackend(OpenSearchConfig.from_env(env))
    if kind == "tantivy":
        from handlers.search.tantivy_backend import TantivyBackend

        path = env.get("LETGO_SEARCH_PATH")
        return TantivyBackend(Path(path) if path else None)
    raise ValueError(f"LETGO_SEARCH_BACKEND={kind!r}: expected opensearch or tantivy")
