"""Firehose PutRecordBatch chunking: within 500 records and 4 MiB per call, in order, each record once."""
from __future__ import annotations

import pytest

from handlers.tracking.sinks.firehose import MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL, chunks

pytestmark = pytest.mark.unit

MIB = 1024 * 1024


@pytest.mark.parametrize(("sizes", "expected_calls"), [
    pytest.param([], [], id="empty"),
    pytest.param([10], [1], id="one"),
    pytest.param([10] * 500, [500], id="500-small"),
    pytest.param([10] * 501, [500, 1], id="501-small"),
    pytest.param([10] * 1001, [500, 500, 1], id="1001-small"),
    pytest.param([MIB] * 4, [4], id="exactly-4MiB"),
    pytest.param([MIB] * 4 + [1], [4, 1], id="one-byte-over-4MiB"),
    pytest.param([3 * MIB // 2] * 7, [2, 2, 2, 1], id="7x1.5MiB"),
    pytest.param([10] * 300 + [3 * MIB // 2] * 3 + [10] * 400, [302, 401], id="mixed"),
])
def test_chunks_sizes_respect_limits_and_keep_order(sizes, expected_calls):
    blobs = [b"x" * size for size in sizes]
    calls = chunks(blobs)
    assert [len(call) for call in calls] == expected_calls
    assert [index for call in calls for index in call] == list(range(len(blobs)))  # order kept, each index once
    for call in calls:
        assert 1 <= len(call) <= MAX_RECORDS_PER_CALL
        assert sum(len(blobs[i]) for i in call) <= MAX_BYTES_PER_CALL
