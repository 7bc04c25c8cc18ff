"""A lane's commit protocol on fake logs: what each log receives when commits succeed, fail with
an unknown outcome, lose a race with another worker, or the partition is revoked meanwhile.

The integration tests (tests/integration/test_bridge.py) check the same protocol end to end on
real clusters; these pin each branch of it, deterministically.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime

import fastavro
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from bus.audit_chain import _TAIL_SCHEMA
from bus.bridge._checkpoint import Checkpoint
from bus.bridge._hops import PATH
from bus.bridge._lane import Lane
from bus.bridge._metrics import BridgeMetrics
from bus.bridge._verdict import Outcome, Verdict
from bus.errors import CheckpointError
from bus.signing import SigningKey
from tests.unit.bridge.fakes import Commit, Failure, FakeLog, bridge_settings, verdict

TP = TopicPartition("intel.events", 2)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DIRECTION = {"source": "interpol", "destination": "europol"}


class Harness:
    """A lane of intel.events/2 on two fake logs, with the seeks and revocation it sees."""

    def __init__(self, *, next_offset: int, audited_until: int) -> None:
        self.source = FakeLog("audit", checkpoint=audited_until)
        self.destination = FakeLog("mirror", checkpoint=next_offset)
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.leaving = False
        self.bounds = (0, 1000)
        """The source partition's earliest retained offset and its end."""
        self.registry = CollectorRegistry()
        self.lane = Lane(
            tp=TP,
            source_log=self.source,
            destination_log=self.destination,
            settings=bridge_settings(),
            metrics=BridgeMetrics.on(self.registry),
            audit_partition=0,
            quarantine_partition=1,
            leaving=lambda: self.leaving,
            seek=lambda tp, offset: self.seeks.append((tp, offset)),
            source_bounds=self.source_bounds,
            clock=lambda: NOW,
        )

    async def source_bounds(self) -> tuple[int, int]:
        return self.bounds

    def revoke(self) -> None:
        self.leaving = True

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {**DIRECTION, **labels})


async def opened(*, next_offset: int = 10, audited_until: int = 10) -> Harness:
    harness = Harness(next_offset=next_offset, audited_until=audited_until)
    await harness.lane.open()
    assert (harness.lane.next_offset, harness.lane.audited_until) == (next_offset, audited_until)
    return harness


def batch() -> list[Verdict]:
    """Source offsets 10 to 19: even ones released, odd ones denied, 13 quarantined."""
    return [
        verdict(
            offset,
            Outcome.QUARANTINE
            if offset == 13
            else Outcome.FORWARD
            if offset % 2 == 0
            else Outcome.DENY,
        )
        for offset in range(10, 20)
    ]


def written(commit: Commit) -> list[tuple[str, bytes | None]]:
    """The records of a commit, audit records without the chain fields the lane added."""
    return [
        (r.topic, r.value[: r.value.index(b"\x02")])  # the chain fields start with 0x02
        if r.topic == "bus.audit" and r.value is not None
        else (r.topic, r.value)
        for r in commit.records
    ]


AUDITED = [
    ("bus.quarantine", b"event-13") if offset == 13 else ("bus.audit", f"audit-{offset}".encode())
    for offset in range(10, 20)
]
MIRRORED = [
    ("interpol.intel.events", f"event-{offset}".encode()) for offset in (10, 12, 14, 16, 18)
]


async def test_both_commits_succeed_and_both_checkpoints_advance() -> None:
    h = await opened()
    assert await h.lane.commit(batch(), next_offset=20)
    assert [(c.next_offset, written(c)) for c in h.source.committed] == [(20, AUDITED)]
    assert [(c.next_offset, written(c)) for c in h.destination.committed] == [(20, MIRRORED)]
    assert all(r.partition == 2 for r in h.destination.committed[0].records)
    assert (h.lane.next_offset, h.lane.audited_until) == (20, 20)
    assert (h.source.opens, h.destination.opens) == (1, 1)
    assert h.seeks == []
    assert h.lane.failing_since is None


async def test_a_failed_commit_that_landed_is_not_written_again() -> None:
    """The mirror's commit reports an error but landed: the re-read checkpoint says so."""
    h = await opened()
    h.destination.failures = [Failure(landed=True)]
    assert await h.lane.commit(batch(), next_offset=20)
    assert [(c.next_offset, written(c)) for c in h.destination.committed] == [(20, MIRRORED)]
    assert h.destination.attempts == 1
    assert h.destination.opens == 2  # reopened to read the checkpoint back
    assert [(c.next_offset, written(c)) for c in h.source.committed] == [(20, AUDITED)]
    assert h.source.attempts == 1
    assert (h.lane.next_offset, h.lane.audited_until) == (20, 20)
    assert h.metric("bus_bridge_transaction_aborts_total") == 1
    assert h.seeks == []
    assert h.lane.failing_since is None


async def test_a_failed_commit_that_did_not_land_is_retried_and_written_once() -> None:
    h = await opened()
    h.destination.failures = [Failure(landed=False)]
    assert await h.lane.commit(batch(), next_offset=20)
    assert [(c.next_offset, written(c)) for c in h.destination.committed] == [(20, MIRRORED)]
    assert h.destination.attempts == 2
    assert h.destination.opens == 2
    # The audit log's commit succeeded the first time: it is not written again.
    assert [(c.next_offset, written(c)) for c in h.source.committed] == [(20, AUDITED)]
    assert h.source.attempts == 1
    assert (h.lane.next_offset, h.lane.audited_until) == (20, 20)
    assert h.seeks == []


@pytest.mark.parametrize(
    ("source_failure", "audited_until", "sought"),
    [
        (None, 20, 15),
        # The other worker audited part of the batch too: start over from the lower checkpoint.
        (Failure(checkpoint=12), 12, 12),
    ],
)
async def test_when_another_worker_moved_part_of_the_batch_the_lane_starts_over_there(
    source_failure: Failure | None, audited_until: int, sought: int
) -> None:
    """The re-read mirror checkpoint (15) is behind the batch's end (20) and not the lane's
    (10): the lane seeks to the lower of its checkpoints and writes nothing more."""
    h = await opened()
    h.source.failures = [source_failure] if source_failure is not None else []
    h.destination.failures = [Failure(checkpoint=15)]
    assert not await h.lane.commit(batch(), next_offset=20)
    assert h.seeks == [(TP, sought)]
    assert h.destination.committed == []
    assert h.destination.attempts == 1
    assert h.source.attempts == 1
    assert len(h.source.committed) == (0 if source_failure is not None else 1)
    assert (h.lane.next_offset, h.lane.audited_until) == (15, audited_until)


@pytest.mark.parametrize("fenced", [False, True])
async def test_a_revocation_during_the_backoff_gives_the_batch_up_unwritten(fenced: bool) -> None:
    """Fenced or not, the lane stops waiting as soon as its partition is being revoked (a fenced
    lane would otherwise wait 20 s for the revocation) and neither reopens nor writes."""
    h = await opened()
    h.destination.failures = [Failure(fenced=fenced, then=h.revoke)]
    async with asyncio.timeout(5):
        assert not await h.lane.commit(batch(), next_offset=20)
    assert h.destination.committed == []
    assert h.destination.attempts == 1
    assert h.destination.opens == 1
    assert h.lane.next_offset == 10
    assert h.seeks == []
    assert h.lane.failing_since is not None


async def test_a_revocation_while_the_log_cannot_be_reopened_gives_the_batch_up() -> None:
    h = await opened()
    h.destination.failures = [Failure()]
    h.destination.open_failures = [h.revoke]
    assert not await h.lane.commit(batch(), next_offset=20)
    assert h.destination.committed == []
    assert h.destination.closes == 1
    assert h.metric("bus_bridge_retries_total", stage="reopen") == 1
    assert h.lane.next_offset == 10
    assert h.seeks == []


async def test_a_log_that_cannot_be_reopened_is_retried_until_it_reads_its_checkpoint() -> None:
    h = await opened()
    h.destination.failures = [Failure()]
    h.destination.open_failures = [None, None]
    assert await h.lane.commit(batch(), next_offset=20)
    assert [(c.next_offset, written(c)) for c in h.destination.committed] == [(20, MIRRORED)]
    assert h.destination.opens == 4  # the first open, two failed reopens, one that worked
    assert h.metric("bus_bridge_retries_total", stage="reopen") == 2


async def test_only_the_log_behind_is_written_after_a_crash_between_the_two_commits() -> None:
    """Audited up to 20, mirrored up to 14: the audit log gets nothing, the mirror the rest."""
    h = await opened(next_offset=14, audited_until=20)
    assert await h.lane.commit(batch(), next_offset=20)
    assert h.source.attempts == 0
    assert [(c.next_offset, written(c)) for c in h.destination.committed] == [(20, MIRRORED[2:])]
    assert (h.lane.next_offset, h.lane.audited_until) == (20, 20)


async def test_the_audit_log_behind_is_written_alone_and_from_its_checkpoint() -> None:
    h = await opened(next_offset=20, audited_until=16)
    assert await h.lane.commit(batch(), next_offset=20)
    assert h.destination.attempts == 0
    assert [(c.next_offset, written(c)) for c in h.source.committed] == [(20, AUDITED[6:])]


async def test_mirrored_records_carry_the_hop_path() -> None:
    h = await opened()
    assert await h.lane.commit(batch(), next_offset=20)
    for record in h.destination.committed[0].records:
        assert (PATH, b"interpol") in record.headers


def test_a_lane_resumes_from_the_lower_of_its_checkpoints() -> None:
    h = Harness(next_offset=0, audited_until=0)
    h.lane.next_offset, h.lane.audited_until = 30, 25
    assert h.lane.resume_from == 25
    h.lane.next_offset = 20
    assert h.lane.resume_from == 20


# --- unexpected errors, blocked lanes ------------------------------------------------------


async def test_an_unexpected_error_in_a_commit_is_counted_and_the_batch_retried() -> None:
    """Not a Kafka error (a bug, a client's ValueError): the log is reopened and the batch
    written once; the error never leaves the lane."""
    h = await opened()
    h.destination.failures = [Failure(error=ValueError("boom"))]
    assert await h.lane.commit(batch(), next_offset=20)
    assert [(c.next_offset, written(c)) for c in h.destination.committed] == [(20, MIRRORED)]
    assert h.destination.opens == 2
    assert h.metric("bus_bridge_errors_total", stage="commit") == 1
    labels = {"topic": "intel.events", "partition": "2", "reason": "error"}
    assert h.metric("bus_bridge_lane_blocked", **labels) is None  # cleared once it moved


async def test_while_the_audit_cannot_be_written_the_mirror_takes_no_further_batch() -> None:
    """The mirror's commit landed, the audit's keeps failing: the lane says it is blocked by
    the audit, and the mirror holds that one batch only, never more."""
    h = await opened()
    seen: list[float | None] = []
    labels = {"topic": "intel.events", "partition": "2", "reason": "audit"}

    def observe() -> None:
        seen.append(h.metric("bus_bridge_lane_blocked", **labels))

    h.source.failures = [Failure(then=observe), Failure(then=observe), Failure(then=h.revoke)]
    assert not await h.lane.commit(batch(), next_offset=20)
    assert seen == [None, 1.0]  # blocked from the first failure on
    assert h.metric("bus_bridge_lane_blocked", **labels) == 1.0
    assert [c.next_offset for c in h.destination.committed] == [20]
    assert h.destination.attempts == 1
    assert h.source.committed == []
    assert (h.lane.next_offset, h.lane.audited_until) == (20, 10)
    # The next owner (or this lane after a re-open) resumes at the audit checkpoint.
    assert h.lane.resume_from == 10


# --- checkpoints that cannot be trusted ----------------------------------------------------


def _alarms(h: Harness, reason: str) -> float | None:
    return h.metric(
        "bus_bridge_checkpoint_alarms_total", topic="intel.events", partition="2", reason=reason
    )


def _stopped_by(h: Harness) -> str | None:
    return None if h.lane.stopped is None else h.lane.stopped.reason


def _blocked_by_checkpoint(h: Harness) -> float | None:
    return h.metric(
        "bus_bridge_lane_blocked", topic="intel.events", partition="2", reason="checkpoint"
    )


def _checkpoint(next_offset: int, direction: str = "interpol->europol") -> Checkpoint:
    return Checkpoint(next_offset=next_offset, direction=direction, bridge_id="x", written_at=NOW)


@pytest.mark.parametrize(
    ("planted", "bounds", "reason"),
    [
        (CheckpointError("mirror (fake)@7: not a bridge checkpoint"), (0, 1000), "undecodable"),
        (CheckpointError("another key", reason="foreign"), (0, 1000), "foreign"),
        (_checkpoint(10, direction="europol->interpol"), (0, 1000), "foreign"),
        (_checkpoint(1001), (0, 1000), "ahead-of-source"),
        (_checkpoint(10), (11, 1000), "behind-retention"),
    ],
)
async def test_an_untrusted_mirror_checkpoint_raises_an_alarm_and_stops_the_lane(
    planted: Checkpoint | CheckpointError, bounds: tuple[int, int], reason: str
) -> None:
    h = Harness(next_offset=10, audited_until=10)
    h.bounds = bounds
    h.destination.planted = planted
    await h.lane.open()
    assert h.lane.stopped is not None
    assert h.lane.stopped.reason == reason
    assert _alarms(h, reason) == 1
    assert _blocked_by_checkpoint(h) == 1
    # Nothing was taken from the untrusted checkpoint.
    assert (h.lane.next_offset, h.lane.audited_until) == (0, 0)


async def test_an_audit_checkpoint_ahead_of_the_source_stops_the_lane_too() -> None:
    h = Harness(next_offset=10, audited_until=10)
    h.source.planted = _checkpoint(5000)
    await h.lane.open()
    assert h.lane.stopped is not None
    assert _alarms(h, "ahead-of-source") == 1


async def test_sane_checkpoints_at_the_bounds_are_trusted() -> None:
    """The end (last stable offset) and the earliest retained offset are both fine."""
    h = Harness(next_offset=1000, audited_until=5)
    h.bounds = (5, 1000)
    await h.lane.open()
    assert h.lane.stopped is None
    assert (h.lane.next_offset, h.lane.audited_until) == (1000, 5)
    assert _blocked_by_checkpoint(h) is None


async def test_a_stopped_lane_alarms_once_and_goes_on_once_its_checkpoint_is_corrected() -> None:
    h = Harness(next_offset=10, audited_until=10)
    h.destination.planted = _checkpoint(5000)
    await h.lane.open()
    await h.lane.open()  # the replicator's re-check: still wrong, no second alarm
    assert _alarms(h, "ahead-of-source") == 1
    assert _stopped_by(h) == "ahead-of-source"
    h.destination.planted = None  # an operator wrote a correct checkpoint
    await h.lane.open()
    assert _stopped_by(h) is None
    assert (h.lane.next_offset, h.lane.audited_until) == (10, 10)
    assert _blocked_by_checkpoint(h) is None
    assert await h.lane.commit(batch(), next_offset=20)


async def test_a_checkpoint_planted_while_a_commit_is_retried_stops_the_lane() -> None:
    """The commit failed; the re-read checkpoint says 5000, past the source's end: the lane
    gives the batch up and stops instead of skipping to 5000."""
    h = await opened()
    h.destination.failures = [Failure()]
    h.destination.planted = _checkpoint(5000)
    assert not await h.lane.commit(batch(), next_offset=20)
    assert h.lane.stopped is not None
    assert h.lane.stopped.reason == "ahead-of-source"
    assert h.lane.next_offset == 10
    assert h.destination.committed == []
    assert h.seeks == []
    assert _alarms(h, "ahead-of-source") == 1


async def test_an_unexpected_error_while_reopening_is_retried() -> None:
    """Two reopens raise something that is not a Kafka error; the third reads the checkpoint."""
    h = await opened()
    h.destination.failures = [Failure()]
    h.destination.planted = RuntimeError("bug")
    fake_open = h.destination.open
    reopens = 0

    async def open_twice_broken() -> Checkpoint | None:
        nonlocal reopens
        reopens += 1
        if reopens == 3:
            h.destination.planted = None
        return await fake_open()

    h.destination.open = open_twice_broken  # type: ignore[method-assign]  # a scripted fault
    assert await h.lane.commit(batch(), next_offset=20)
    assert h.metric("bus_bridge_errors_total", stage="reopen") == 2
    assert [c.next_offset for c in h.destination.committed] == [20]


def _chain(commit: Commit) -> list[tuple[int, bool]]:
    """(sequence, signed) of each audit record of a commit."""
    found = []
    for r in commit.records:
        if r.topic != "bus.audit" or r.value is None:
            continue
        # The fake's "audit-<offset>" has no byte 0x02; the chain fields start with one.
        tail = r.value[r.value.index(b"\x02") :]
        fields = fastavro.schemaless_reader(io.BytesIO(tail), _TAIL_SCHEMA, None)
        assert isinstance(fields, dict)
        found.append((fields["sequence"], fields["signature"] is not None))
    return found


async def test_the_audit_chain_goes_on_across_commits_and_from_the_checkpoint_after_a_reopen() -> (
    None
):
    """Each commit chains its audit records after the last committed one, signs the last, and
    keeps the head in its checkpoint; a new lane on the same logs continues from that head."""
    key = SigningKey.generate()
    h = await opened()
    h.lane._audit_signer = key
    assert await h.lane.commit(batch(), next_offset=20)
    assert _chain(h.source.committed[0]) == [(i, i == 8) for i in range(9)]
    assert h.source.audit_head is not None
    assert h.source.audit_head.sequence == 9
    again = Lane(
        tp=TP,
        source_log=h.source,
        destination_log=h.destination,
        settings=bridge_settings(),
        metrics=BridgeMetrics.on(h.registry),
        audit_partition=0,
        quarantine_partition=1,
        leaving=lambda: False,
        seek=lambda tp, offset: None,
        source_bounds=h.source_bounds,
        clock=lambda: NOW,
        audit_signer=key,
    )
    await again.open()
    assert again.audit_head == h.source.audit_head
    later = [verdict(offset, Outcome.DENY) for offset in range(20, 23)]
    assert await again.commit(later, next_offset=23)
    assert _chain(h.source.committed[1]) == [(9, False), (10, False), (11, True)]


async def test_a_failed_audit_commit_does_not_advance_the_chain() -> None:
    """The chain's head moves only with a committed transaction: a retry writes the same
    sequences again, so the committed chain has no gap."""
    h = await opened()
    h.source.failures = [Failure(landed=False)]
    assert await h.lane.commit(batch(), next_offset=20)
    assert h.source.attempts == 2
    assert [seq for seq, _ in _chain(h.source.committed[0])] == list(range(9))
