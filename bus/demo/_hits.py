"""What the demo reads from ``bus.correlations``: each agency's correlation hits, live.

An agency's correlator (``bus correlate run --agency X``, docs/correlate.md) writes a
``CorrelationHit`` to ``bus.correlations`` on X's cluster when events of two origins share an
identifier. The demo reads that topic on every agency's cluster as the agency's application
(``X-app`` may read it: docs/security.md), ``read_committed``, from where it ended when the demo
started, and shows the count and the latest hits.

Whether a correlator runs at all is told by its consumer group ``bus-correlate.<agency>``: a
correlator commits the offsets of the feeds it read there with every transaction. No committed
offset means no correlator was ever seen, and the view says so rather than showing 0 hits;
the offsets' growth since the start says how many records it read during the demo.

:class:`Correlations` and :func:`hit_line` are pure; :class:`HitReader` reads the cluster.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bus._kafka import client_options, translated
from bus.codec import default_store
from bus.config import AgencySettings
from bus.errors import BusError

__all__ = [
    "CORRELATIONS_TOPIC",
    "Correlations",
    "CorrelationsUnreadable",
    "HitLine",
    "HitReader",
    "hit_line",
]

CORRELATIONS_TOPIC: Final = "bus.correlations"
_HIT_SCHEMA: Final = "bus.correlate.CorrelationHit"
_GROUP_PREFIX: Final = "bus-correlate."
_LATEST: Final = 5
_MAX_POLLS: Final = 50
_UNKNOWN_TOPIC: Final = 3
_NOT_AUTHORISED: Final = 29


class CorrelationsUnreadable(BusError):
    """``bus.correlations`` could not be read (not authorised, or another Kafka error)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HitLine:
    """One hit as the view shows it: the shared identifier, and each side's origin and event."""

    kind: str
    identifier: str
    first_origin: str
    first_event_id: str
    second_origin: str
    second_event_id: str

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "identifier": self.identifier,
            "first_origin": self.first_origin,
            "first_event_id": self.first_event_id,
            "second_origin": self.second_origin,
            "second_event_id": self.second_event_id,
        }


def hit_line(hit: Mapping[str, Any]) -> HitLine:
    """A decoded ``CorrelationHit`` as a :class:`HitLine`."""
    first, second = hit["first"], hit["second"]
    return HitLine(
        kind=hit["identifier_kind"],
        identifier=hit["identifier"],
        first_origin=first["origin"],
        first_event_id=first["event_id"],
        second_origin=second["origin"],
        second_event_id=second["event_id"],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Correlations:
    """One agency's correlation hits since the demo started, and whether a correlator runs."""

    agency: str
    seen: bool = False
    """A correlator of this agency committed offsets (now or before the demo)."""
    read: int = 0
    """Feed records its committed offsets grew by since the demo started."""
    hits: int = 0
    """Hits written to ``bus.correlations`` since the demo started."""
    latest: tuple[HitLine, ...] = ()
    """The latest few, newest last."""
    unreadable: int = 0
    """Records on ``bus.correlations`` that are not a ``CorrelationHit`` (counted, not shown)."""
    error: str | None = None
    """Why the last read failed, if it did."""

    @property
    def status(self) -> str:
        """One line: the correlator's state as the view shows it."""
        if self.error is not None:
            return f"cannot read: {self.error}"
        if not self.seen:
            return f"no correlator seen (start one: bus correlate run --agency {self.agency})"
        if self.read == 0:
            return "correlator seen before, idle since the demo started"
        return f"correlator running: read +{self.read} records"

    def as_dict(self) -> dict[str, Any]:
        return {
            "agency": self.agency,
            "correlator_seen": self.seen,
            "correlator_read": self.read,
            "hits": self.hits,
            "latest": [h.as_dict() for h in self.latest],
            "unreadable": self.unreadable,
            "error": self.error,
        }


class HitReader:
    """Reads ``agency``'s ``bus.correlations`` and its correlator's committed offsets.

    ``start()`` notes where the topic ends (hits before the demo are not counted) and the
    group's offsets; each ``poll()`` reads what came since and answers the state. A failed
    read is answered as :attr:`Correlations.error` (the demo goes on).
    """

    def __init__(self, agency: str, settings: AgencySettings) -> None:
        self.agency = agency
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._assigned = False
        self._started_at: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._hits = 0
        self._unreadable = 0
        self._latest: deque[HitLine] = deque(maxlen=_LATEST)

    @property
    def group(self) -> str:
        return f"{_GROUP_PREFIX}{self.agency}"

    async def start(self) -> None:
        options = client_options(self._settings, client_id=f"bus-demo-hits-{self.agency}")
        self._consumer = AIOKafkaConsumer(
            **options,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        self._admin = AIOKafkaAdminClient(**options)
        with translated(f"cannot connect the demo's hit reader to {self.agency}'s cluster"):
            await self._consumer.start()
            await self._admin.start()
        try:
            await self._assign(at_end=True)
            self._started_at = await self._offsets()
        except BusError:
            pass  # the first poll answers it

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def _assign(self, *, at_end: bool) -> None:
        assert self._consumer is not None
        if self._assigned:
            return
        assert self._admin is not None
        with translated(f"cannot read {CORRELATIONS_TOPIC} on {self.agency}'s cluster"):
            (described,) = await self._admin.describe_topics([CORRELATIONS_TOPIC])
            code = described["error_code"]
            if code == _UNKNOWN_TOPIC:
                return  # no correlator made it yet: every hit it writes later is new
            if code != 0:
                raise CorrelationsUnreadable(_unreadable(self.agency, code))
            numbers = sorted(p["partition"] for p in described["partitions"])
            tps = [TopicPartition(CORRELATIONS_TOPIC, p) for p in numbers]
            self._consumer.assign(tps)
            if at_end:
                ends = await self._consumer.end_offsets(tps)
                for tp, offset in ends.items():
                    self._consumer.seek(tp, offset)
            else:
                await self._consumer.seek_to_beginning(*tps)
        self._assigned = True

    async def _offsets(self) -> dict[TopicPartition, int]:
        assert self._admin is not None
        with translated(
            f"cannot read the offsets of group {self.group} on {self.agency}'s cluster"
        ):
            committed = await self._admin.list_consumer_group_offsets(self.group)
        return {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}

    async def poll(self) -> Correlations:
        """Read what came since the last poll; the agency's state now."""
        assert self._consumer is not None
        error: str | None = None
        try:
            await self._assign(at_end=False)
            if self._assigned:
                await self._read()
            self._committed = await self._offsets()
        except BusError as exc:
            error = str(exc)
        start = self._started_at
        return Correlations(
            agency=self.agency,
            seen=bool(self._committed),
            read=sum(max(0, o - start.get(tp, 0)) for tp, o in self._committed.items()),
            hits=self._hits,
            latest=tuple(self._latest),
            unreadable=self._unreadable,
            error=error,
        )

    async def _read(self) -> None:
        assert self._consumer is not None
        store = default_store()
        for _ in range(_MAX_POLLS):
            with translated(f"cannot read {CORRELATIONS_TOPIC} on {self.agency}'s cluster"):
                batches = await self._consumer.getmany(timeout_ms=100, max_records=1000)
            records = [r for batch in batches.values() for r in batch]
            if not records:
                return
            for record in records:
                try:
                    line = hit_line(store.decode(record.value or b"", _HIT_SCHEMA))
                except (BusError, KeyError, TypeError, ValueError):
                    self._unreadable += 1
                    continue
                self._hits += 1
                self._latest.append(line)


def _unreadable(agency: str, code: int) -> str:
    what = f"{CORRELATIONS_TOPIC} on {agency}'s cluster: Kafka error code {code}"
    if code == _NOT_AUTHORISED:
        what += (
            f" (not authorised: {agency}-app may read it once `bus local up` granted its ACLs, "
            "docs/security.md)"
        )
    return what
