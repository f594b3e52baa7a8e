"""Who may do what in the search domain: the OpenSearch security roles of the indexer and the search API.

The domain runs fine-grained access control with one IAM master user (the elasticsearch layer's admin role).
Every other IAM role is denied until a security-plugin *role mapping* names it, so the indexer (writes
listings) and the search API's instances (read) get two narrow roles here:

* ``letgo_search_writer`` — read, write and delete documents, create indices and move aliases on the listing
  indices and the listing-state index (tombstones, early updates: ``handlers/search/listings.py``) only;
* ``letgo_search_reader`` — read those indices only.

Index templates are cluster-level, so neither service creates them: ``letgo search setup`` (run as the admin
role, from inside the VPC — the domain has no public endpoint) creates the templates and aliases and applies
these roles and mappings. Both are idempotent (PUT of the whole document), so it runs after every deploy;
the services start with ``LETGO_SEARCH_SETUP=0`` on AWS and only use what it made.
"""
from __future__ import annotations

from typing import Any, Sequence

from handlers.search.languages import SUPPORTED
from handlers.search.model import CATEGORIES

WRITER, READER = "letgo_search_writer", "letgo_search_reader"
# every name handlers.search.opensearch_config.IndexNames makes: <ns>classified_ads_<lang>[_vN] and the
# per-category splits <ns><category>_<lang>[_vN] (a leading * covers a namespace)
INDEX_PATTERNS = ["*classified_ads_*"] + [f"*{category}_{language}*" for category in CATEGORIES
                                          for language in sorted(SUPPORTED)]
STATE_PATTERNS = ["*listing_state*"]  # <ns>listing_state[_vN]: only the indexer reads and writes it


def role_documents() -> dict[str, dict[str, Any]]:
    return {
        WRITER: {"cluster_permissions": ["cluster_composite_ops", "indices:data/read/scroll*"],
                 "index_permissions": [{"index_patterns": INDEX_PATTERNS + STATE_PATTERNS,
                                        "allowed_actions": ["crud", "create_index", "indices:admin/aliases*",
                                                            "indices:admin/refresh*", "indices:admin/get",
                                                            "indices:admin/mapping/put"]}]},
        READER: {"cluster_permissions": ["cluster_composite_ops_ro"],
                 "index_permissions": [{"index_patterns": INDEX_PATTERNS,
                                        "allowed_actions": ["read", "indices:admin/get",
                                                            "indices:admin/aliases/get"]}]},
    }


def mapping_documents(writer_role_arns: Sequence[str], reader_role_arns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """IAM role ARNs become backend roles: that is how OpenSearch matches a SigV4-signed caller's role."""
    return {WRITER: {"backend_roles": sorted(set(writer_role_arns))},
            READER: {"backend_roles": sorted(set(reader_role_arns))}}


def apply(client: Any, writer_role_arns: Sequence[str], reader_role_arns: Sequence[str]) -> list[str]:
    """PUT both roles and their mappings through the security plugin's API; returns what was written."""
    done = []
    for name, body in role_documents().items():
        client.security.create_role(role=name, body=body)
        done.append(f"role {name}")
    for name, body in mapping_documents(writer_role_arns, reader_role_arns).items():
        client.security.create_role_mapping(role=name, body=body)
        done.append(f"mapping {name} <- {', '.join(body['backend_roles']) or '(nobody)'}")
    return done
