"""The one way a deployment opens its search engine: :func:`open_backend`, from the environment, strictly.

The stream indexer (``lambda_indexer.py``), the search API (``wsgi.py``) and the CLI (``letgo search``) read
the same variables, so they read them here, with one set of rules: nothing is guessed (an unset
``LETGO_SEARCH_BACKEND`` does not quietly mean "an in-memory index" on a Lambda that was meant to write
to OpenSearch), and a misconfiguration stops the process at start-up with a
:class:`~handlers.core.config.ConfigError` naming the variable to fix:

* ``LETGO_SEARCH_BACKEND`` (required) — ``opensearch`` (AWS) or ``tantivy`` (the local stage);
* with opensearch: ``LETGO_OPENSEARCH_URL`` (required, ``http(s)://host[:port]``) and the optional
  ``LETGO_OPENSEARCH_AWS_REGION`` (SigV4; ``AWS_REGION`` also counts for an ``*.amazonaws.com`` endpoint),
  ``LETGO_OPENSEARCH_AWS_SERVICE``, ``LETGO_OPENSEARCH_NAMESPACE``, ``LETGO_OPENSEARCH_SPLIT_CATEGORIES``
  (comma-separated), ``LETGO_OPENSEARCH_SHARDS``, ``LETGO_OPENSEARCH_REPLICAS`` —
  :meth:`~handlers.search.opensearch_config.OpenSearchConfig.from_env`;
* with tantivy: ``LETGO_SEARCH_PATH`` (required) — the index directory (created if missing).

Engines are imported only when chosen: the API image needs only the one it runs. The backend comes back
not yet set up (call ``setup()`` or use it as a context manager; on AWS ``letgo search setup`` does it once).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from handlers.core.config import ConfigError, Env
from handlers.search.backend import SearchBackend

BACKENDS = ("opensearch", "tantivy")


def open_backend(env: Mapping[str, str] | Env | None = None) -> SearchBackend:
    """The engine the environment names (``os.environ`` unless given), not yet set up."""
    env = env if isinstance(env, Env) else Env(env)
    kind = _required(env, "LETGO_SEARCH_BACKEND", f"one of {', '.join(BACKENDS)}").lower()
    if kind == "opensearch":
        from handlers.search.opensearch_backend import OpenSearchBackend, OpenSearchConfig

        return OpenSearchBackend(OpenSearchConfig.from_env(env))
    if kind == "tantivy":
        from handlers.search.tantivy_backend import TantivyBackend

        path = Path(_required(env, "LETGO_SEARCH_PATH", "the index directory (LETGO_SEARCH_BACKEND=tantivy)"))
        if path.exists() and not path.is_dir():
            raise ConfigError("LETGO_SEARCH_PATH", f"{path} is not a directory")
        return TantivyBackend(path)
    raise ConfigError("LETGO_SEARCH_BACKEND", f"{kind!r}: expected one of {', '.join(BACKENDS)}")


def _required(env: Env, name: str, what: str) -> str:
    value = (env.optional(name) or "").strip()
    if not value:
        raise ConfigError(name, f"required: {what}")
    return value
