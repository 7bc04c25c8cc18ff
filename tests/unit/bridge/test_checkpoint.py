"""Checkpoints: their encoding, and one transactional id per source partition and log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bus.bridge._checkpoint import Checkpoint, transactional_id
from bus.errors import CheckpointError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_checkpoints_round_trip_and_refuse_garbage() -> None:
    checkpoint = Checkpoint(
        next_offset=17, direction="interpol->europol", bridge_id="b", written_at=NOW
    )
    assert Checkpoint.decode(checkpoint.encode(), where="t/0@3") == checkpoint
    with pytest.raises(CheckpointError, match="t/0@3"):
        Checkpoint.decode(b"{}", where="t/0@3")
    with pytest.raises(CheckpointError, match="negative"):
        Checkpoint.decode(
            b'{"next_offset":-1,"direction":"a->b","bridge_id":"b",'
            b'"written_at":"2026-01-01T00:00:00+00:00"}',
            where="x",
        )


def test_each_partition_and_log_has_its_own_transactional_id() -> None:
    ids = {
        transactional_id("interpol", "europol", "intel.events", p, log)
        for p in range(3)
        for log in ("audit", "mirror")
    }
    assert len(ids) == 6


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (b"secret-not-json", "not JSON"),
        (b'["secret"]', "not a JSON object"),
        (
            b'{"next_offset":"secret","bridge_id":"b","written_at":"2026-01-01T00:00:00Z"}',
            "next_offset",
        ),
        (
            b'{"next_offset":1,"direction":"a->b","bridge_id":"b","written_at":"secret"}',
            "written_at",
        ),
        (
            b'{"next_offset":1,"direction":"a->b","written_at":"2026-01-01T00:00:00Z"}',
            "bridge_id missing",
        ),
        (
            b'{"next_offset":"12","direction":"a->b","bridge_id":"secret",'
            b'"written_at":"2026-01-01T00:00:00Z"}',
            "next_offset is malformed",
        ),
        (
            b'{"next_offset":true,"direction":"a->b","bridge_id":"secret",'
            b'"written_at":"2026-01-01T00:00:00Z"}',
            "next_offset is malformed",
        ),
        (
            b'{"next_offset":1,"direction":["secret"],"bridge_id":"b",'
            b'"written_at":"2026-01-01T00:00:00Z"}',
            "direction is malformed",
        ),
        (b"[" * 100_000 + b"secret", "not JSON"),
    ],
)
def test_a_bad_checkpoint_names_the_field_and_never_echoes_the_value(
    value: bytes, named: str
) -> None:
    with pytest.raises(CheckpointError, match=named) as info:
        Checkpoint.decode(value, where="t/0@3")
    assert "secret" not in str(info.value)


def test_a_checkpoint_written_before_directions_were_recorded_is_still_read() -> None:
    value = b'{"next_offset":12,"bridge_id":"b","written_at":"2026-01-01T00:00:00Z"}'
    checkpoint = Checkpoint.decode(value, where="t/0@3")
    assert (checkpoint.next_offset, checkpoint.direction) == (12, None)
