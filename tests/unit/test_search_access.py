"""The search domain's security roles: narrow, on the listing indices only, mapped to the services' IAM roles.

osmem-server has no security plugin, so ``apply`` is checked against a recorder of the opensearch-py security
calls (their names and arguments are the client's); the documents themselves are checked directly.
"""
from __future__ import annotations

import fnmatch

import pytest

from handlers.search import access
from handlers.search.opensearch_config import IndexNames

pytestmark = pytest.mark.unit

WRITER_ARN = "arn:aws:iam::123456789012:role/letgo-search-indexer"
READER_ARN = "arn:aws:iam::123456789012:role/letgo-search-api"


class Recorder:
    def __init__(self):
        self.calls = []
        self.security = self

    def create_role(self, role, body):
        self.calls.append(("role", role, body))

    def create_role_mapping(self, role, body):
        self.calls.append(("mapping", role, body))


def test_roles_grant_only_the_listing_indices_and_the_reader_cannot_write():
    roles = access.role_documents()
    for role in roles.values():
        for grant in role["index_permissions"]:
            assert "*" not in grant["index_patterns"]
    reader = roles[access.READER]["index_permissions"][0]["allowed_actions"]
    assert not {"crud", "write", "create_index", "indices:admin/aliases*"} & set(reader)
    assert "crud" in roles[access.WRITER]["index_permissions"][0]["allowed_actions"]


def test_index_patterns_cover_every_name_the_backend_uses():
    from handlers.search.model import CATEGORIES

    for names in (IndexNames(), IndexNames(namespace="t1_")):
        for language in ("es", "nl", "en", "tr", "pt"):
            wanted = [names.read_alias(language), names.read_alias(language) + "_v3"]
            wanted += [names.category_alias(c, language) + suffix for c in CATEGORIES for suffix in ("", "_v2")]
            for name in wanted:
                assert any(fnmatch.fnmatch(name, p) for p in access.INDEX_PATTERNS), name
    assert not any(fnmatch.fnmatch(".opendistro_security", p) for p in access.INDEX_PATTERNS)


def test_apply_puts_both_roles_then_maps_each_services_role():
    recorder = Recorder()
    done = access.apply(recorder, [WRITER_ARN], [READER_ARN])
    assert [c[:2] for c in recorder.calls] == [("role", access.WRITER), ("role", access.READER),
                                              ("mapping", access.WRITER), ("mapping", access.READER)]
    assert recorder.calls[2][2] == {"backend_roles": [WRITER_ARN]}
    assert recorder.calls[3][2] == {"backend_roles": [READER_ARN]}
    assert len(done) == 4
