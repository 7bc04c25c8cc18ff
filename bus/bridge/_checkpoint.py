"""Checkpoints: how far the bridge has moved each source partition, kept on the destination.

The checkpoint of source ``(topic, partition)`` is a record on the destination cluster's topic
``bus.checkpoints.<source>.<topic>``, partition ``partition``, written in the same transaction
as the mirrored records it accounts for. So the destination always holds, atomically, both the
copies and the source offset after the last one. Each checkpoint partition has exactly one
writer (the transactional id of that source partition), so after that producer's
``init_transactions`` (which fences and aborts a zombie's transaction) the last committed
record of the partition is the checkpoint.

Value: compact JSON ``{"next_offset": N, "direction": "<source>-><destination>", "bridge_id":
"...", "written_at": "RFC 3339"}``, and on the source's audit checkpoints ``"audit_head":
{"sequence": N, "hash": "<hex>"}``, where the partition's audit chain stands
(``bus.audit_chain``): written in the same transaction as the audit records, so a restarted
lane continues the chain exactly where the committed records end. Key:
``<source>/<topic>/<partition>``. The topic is compacted: only the last checkpoint matters. A
bridge id names one worker process and changes
with every restart (``<source>-><destination>@host:pid`` by default), so what a reader checks is
the direction and the key, never the bridge id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from bus.audit_chain import ChainHead
from bus.errors import CheckpointError

__all__ = [
    "Checkpoint",
    "audit_checkpoint_topic",
    "checkpoint_key",
    "checkpoint_topic",
    "transactional_id",
]

_T = TypeVar("_T")


def checkpoint_topic(source: str, topic: str) -> str:
    """The destination's topic that holds the checkpoints of ``source``'s ``topic``."""
    return f"bus.checkpoints.{source}.{topic}"


def audit_checkpoint_topic(destination: str, topic: str) -> str:
    """The source's topic that holds how far the decisions about ``topic`` are audited."""
    return f"bus.checkpoints.audit.{destination}.{topic}"


def checkpoint_key(source: str, topic: str, partition: int) -> bytes:
    return f"{source}/{topic}/{partition}".encode()


def transactional_id(source: str, destination: str, topic: str, partition: int, log: str) -> str:
    """One transactional id per source partition and log (``mirror`` on the destination,
    ``audit`` on the source): a new owner fences any zombie of the old."""
    return f"bus-bridge.{source}.{destination}.{topic}.{partition}.{log}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """The next source offset to move, and who wrote it when."""

    next_offset: int
    direction: str | None
    """``<source>-><destination>``: the bridge direction that wrote it (None in checkpoints
    written before the direction was recorded: they are still read)."""
    bridge_id: str
    written_at: datetime
    audit_head: ChainHead | None = None
    """Where the source partition's audit chain stands (audit checkpoints only)."""

    def encode(self) -> bytes:
        raw: dict[str, Any] = {
            "next_offset": self.next_offset,
            "direction": self.direction,
            "bridge_id": self.bridge_id,
            "written_at": self.written_at.astimezone(UTC).isoformat(),
        }
        if self.audit_head is not None:
            raw["audit_head"] = self.audit_head.to_json()
        return json.dumps(raw, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes, *, where: str) -> Checkpoint:
        """Read a checkpoint value; ``CheckpointError`` naming ``where`` and the field if it is
        not one (never the value: whoever can write the topic chose it)."""
        try:
            raw: Any = json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            raise CheckpointError(
                f"{where}: not a bridge checkpoint (not JSON, {len(value)} bytes)"
            ) from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{where}: not a bridge checkpoint (not a JSON object)")
        next_offset = _field(raw, "next_offset", _integer, where)
        direction = _field(raw, "direction", _text, where) if "direction" in raw else None
        bridge_id = _field(raw, "bridge_id", _text, where)
        written_at = _field(raw, "written_at", datetime.fromisoformat, where)
        audit_head = (
            _field(raw, "audit_head", ChainHead.from_json, where) if "audit_head" in raw else None
        )
        if next_offset < 0:
            raise CheckpointError(f"{where}: next_offset is negative")
        return cls(
            next_offset=next_offset,
            direction=direction,
            bridge_id=bridge_id,
            written_at=written_at,
            audit_head=audit_head,
        )


def _integer(value: Any) -> int:
    # int("12") and int(1.5) would accept what no bridge writes.
    if type(value) is not int:
        raise TypeError("not an integer")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _field(raw: dict[str, Any], name: str, parse: Callable[[Any], _T], where: str) -> _T:
    if name not in raw:
        raise CheckpointError(f"{where}: not a bridge checkpoint ({name} missing)")
    try:
        return parse(raw[name])
    except (ValueError, TypeError):
        raise CheckpointError(f"{where}: not a bridge checkpoint ({name} is malformed)") from None
