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
        [f"classified_ads_{language}_v{SCHEMA_VERSION}" for language in ("es", "nl", "en", "tr", "pt")]
        + [f"listing_state_v{SCHEMA_VERSION}"])


def test_refresh_shows_a_reader_what_another_process_committed(tmp_path):
    """The API worker reads the directory the indexer (another process) writes: refresh() reopens the reader."""
    import subprocess
    import sys

    ads = CORPUS
    reader = TantivyBackend(tmp_path / "index")
    reader.setup()
    writer_code = ("import sys; from pathlib import Path; from handlers.search.tantivy_backend import TantivyBackend; "
                   "from tests.search_kit import CORPUS; "
                   "b = TantivyBackend(Path(sys.argv[1])); b.setup(); b.index(CORPUS[:int(sys.argv[2])]); b.close()")
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", writer_code, str(tmp_path / "index"), "40"], cwd=repo, check=True)
    reader.refresh()
    seen = reader.fetch([ad.item_id for ad in ads[:40]])
    reader.close()
    assert len(seen) == 40
