"""Stand-ins for a source record and a transactional log, and small builders of settings and
verdicts, for unit tests of the bridge's parts.

``FakeLog`` keeps what it committed in memory and fails the commits it is told to, the way a
real transactional log can: the commit landed although the client saw an error (its outcome was
unknown), it did not land, or another worker wrote the checkpoint meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bus.audit_chain import ChainHead
from bus.bridge._checkpoint import Checkpoint
from bus.bridge._outgoing import Outgoing
from bus.bridge._verdict import Outcome, Verdict
from bus.bridge.settings import BridgeSettings
from bus.config import AgencySettings, TopicSettings
from bus.errors import CheckpointError, Fenced, TransportError, TruncatedRecord, TxFailed
from tests.signed import make_event

__all__ = ["Commit", "Failure", "FakeLog", "Record", "bridge_settings", "verdict"]


@dataclass(frozen=True)
class Record:
    """A source record as the consumer gives it (the fields the bridge reads)."""

    value: bytes | None
    topic: str = "intel.events"
    partition: int = 2
    offset: int = 41
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"case-1"
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)


def bridge_settings(**options: Any) -> BridgeSettings:
    """interpol -> europol, bridge id ``b1``, retrying after a millisecond or two."""
    defaults: dict[str, Any] = {"retry_backoff_s": 0.001, "max_backoff_s": 0.002}
    return BridgeSettings(
        source=AgencySettings(name="interpol", bootstrap_servers=("127.0.0.1:1",)),
        destination=AgencySettings(name="europol", bootstrap_servers=("127.0.0.1:2",)),
        topics=TopicSettings(),
        source_topics=("intel.events",),
        bridge_id="b1",
        **(defaults | options),
    )


def verdict(offset: int, outcome: Outcome, *, value: bytes | None = None) -> Verdict:
    """The verdict about the record at ``offset`` of intel.events/2, whose value is
    ``event-<offset>`` unless given; a decision's audit record is ``audit-<offset>`` and its
    verified event is interpol's, with correlation id ``case-<offset>``."""
    record = Record(
        value=f"event-{offset}".encode() if value is None else value,
        offset=offset,
        key=f"case-{offset}".encode(),
    )
    if outcome is Outcome.QUARANTINE:
        error = TruncatedRecord(f"intel.events/2@{offset}: the record ends early")
        return Verdict(record=record, outcome=outcome, error=error)
    return Verdict(
        record=record,
        outcome=outcome,
        audit_key=f"id-{offset}".encode(),
        # The five null chain fields of AuditRecord v2 end it, as the bridge chains them.
        audit_value=f"audit-{offset}".encode() + bytes(5),
        event=make_event("interpol", correlation_id=f"case-{offset}"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """One transaction that landed: its records and its checkpoint."""

    records: tuple[Outgoing, ...]
    next_offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """How one commit fails."""

    landed: bool = False
    """The transaction committed although the client saw an error: its outcome was unknown."""
    fenced: bool = False
    """The error is ``Fenced`` (another producer took over) rather than ``TxFailed``."""
    checkpoint: int | None = None
    """Another worker wrote this checkpoint meanwhile."""
    then: Callable[[], None] | None = None
    """Called once the commit has failed (e.g. a revocation begins)."""
    error: Exception | None = None
    """Raised instead of ``TxFailed``/``Fenced`` (an unexpected error), the commit not landed."""


class FakeLog:
    """A transactional log in memory, with scripted failures of its commits and opens."""

    def __init__(self, name: str, *, checkpoint: int = 0) -> None:
        self.where = f"{name} (fake)"
        self.checkpoint = checkpoint
        self.audit_head: ChainHead | None = None
        self.committed: list[Commit] = []
        """The transactions that landed, in order."""
        self.attempts = 0
        self.opens = 0
        self.closes = 0
        self.failures: list[Failure] = []
        """How the next commits fail, in order; a commit with none left succeeds."""
        self.open_failures: list[Callable[[], None] | None] = []
        """The next opens fail, each with its callback (if any) run once it has failed."""
        self.planted: Checkpoint | CheckpointError | Exception | None = None
        """What the next opens find instead of the last commit's checkpoint (a checkpoint
        someone else wrote, a record that is not one) or raise (an unexpected error)."""
        self.direction = "interpol->europol"

    async def open(self) -> Checkpoint | None:
        self.opens += 1
        if self.open_failures:
            then = self.open_failures.pop(0)
            if then is not None:
                then()
            raise TransportError(f"{self.where}: the cluster is unavailable")
        if isinstance(self.planted, Exception):
            raise self.planted
        if self.planted is not None:
            return self.planted
        if self.checkpoint == 0:
            return None
        return Checkpoint(
            next_offset=self.checkpoint,
            direction=self.direction,
            bridge_id="b0",
            written_at=datetime(2026, 3, 1, 11, 0, tzinfo=UTC),
            audit_head=self.audit_head,
        )

    async def commit(
        self,
        records: Sequence[Outgoing],
        *,
        next_offset: int,
        bridge_id: str,
        now: datetime,
        audit_head: ChainHead | None = None,
    ) -> None:
        self.attempts += 1
        failure = self.failures.pop(0) if self.failures else None
        if failure is None or failure.landed:
            self.committed.append(Commit(records=tuple(records), next_offset=next_offset))
            self.checkpoint = next_offset
            self.audit_head = audit_head
        if failure is None:
            return
        if failure.checkpoint is not None:
            self.checkpoint = failure.checkpoint
        if failure.then is not None:
            failure.then()
        if failure.error is not None:
            raise failure.error
        error = Fenced if failure.fenced else TxFailed
        raise error(f"{self.where}: commit up to {next_offset - 1} failed (scripted)")

    async def close(self) -> None:
        self.closes += 1
