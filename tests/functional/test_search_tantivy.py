"""What only the embedded backend has: index directories on disk that survive a restart of the local stage."""
from __future__ import annotations

from pathlib import Path

import pytest

from handlers.search import SearchRequest
from handlers.search.tantivy_backend import SCHEMA_VERSION, TantivyBackend
from tests.search_kit import CORPUS, in_language

pytestmark = pytest.mark.functional


def test_indices_on_disk_survive_a_restart(tmp_path: Path) -> None:
    dutch = in_language(CORPUS, "nl")
    with TantivyBackend(tmp_path) as first:
        first.index(dutch)
        first.remove([dutch[0].item_id])

    with TantivyBackend(tmp_path) as second:  # a new process would do the same: open, no re-fill
        assert second.search(SearchRequest("nl")).total == len(dutch) - 1
        assert second.fetch([dutch[0].item_id, dutch[1].item_id]) == {dutch[1].item_id: dutch[1]}
        second.index([dutch[0]])  # the writer lock of the first instance was released
        assert second.search(SearchRequest("nl")).total == len(dutch)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"classified_ads_{language}_v{SCHEMA_VERSION}" for language in ("es", "nl", "en", "tr", "pt"))
