"""Checkpoints: their encoding, and one transactional id per source partition and log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bus.bridge._checkpoint import Checkpoint, transactional_id

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_checkpoints_round_trip_and_refuse_garbage() -> None:
    checkpoint = Checkpoint(next_offset=17, bridge_id="b", written_at=NOW)
    assert Checkpoint.decode(checkpoint.encode(), where="t/0@3") == checkpoint
    with pytest.raises(ValueError, match="t/0@3"):
        Checkpoint.decode(b"{}", where="t/0@3")
    with pytest.raises(ValueError, match="negative"):
        Checkpoint.decode(
            b'{"next_offset":-1,"bridge_id":"b","written_at":"2026-01-01T00:00:00+00:00"}',
            where="x",
        )


def test_each_partition_and_log_has_its_own_transactional_id() -> None:
    ids = {
        transactional_id("interpol", "europol", "intel.events", p, log)
        for p in range(3)
        for log in ("audit", "mirror")
    }
    assert len(ids) == 6
