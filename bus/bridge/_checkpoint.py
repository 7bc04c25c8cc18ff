"""Checkpoints: how far the bridge has moved each source partition, kept on the destination.

The checkpoint of source ``(topic, partition)`` is a record on the destination cluster's topic
``bus.checkpoints.<source>.<topic>``, partition ``partition``, written in the same transaction
as the mirrored records it accounts for. So the destination always holds, atomically, both the
copies and the source offset after the last one. Each checkpoint partition has exactly one
writer (the transactional id of that source partition), so after that producer's
``init_transactions`` (which fences and aborts a zombie's transaction) the last committed
record of the partition is the checkpoint.

Value: compact JSON ``{"next_offset": N, "bridge_id": "...", "written_at": "RFC 3339"}``; key:
``<source>/<topic>/<partition>``. The topic is compacted: only the last checkpoint matters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "Checkpoint",
    "audit_checkpoint_topic",
    "checkpoint_key",
    "checkpoint_topic",
    "transactional_id",
]


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
    bridge_id: str
    written_at: datetime

    def encode(self) -> bytes:
        return json.dumps(
            {
                "next_offset": self.next_offset,
                "bridge_id": self.bridge_id,
                "written_at": self.written_at.astimezone(UTC).isoformat(),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, value: bytes, *, where: str) -> Checkpoint:
        """Read a checkpoint value; ``ValueError`` naming ``where`` if it is not one."""
        try:
            raw: Any = json.loads(value)
            checkpoint = cls(
                next_offset=int(raw["next_offset"]),
                bridge_id=str(raw["bridge_id"]),
                written_at=datetime.fromisoformat(raw["written_at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: not a bridge checkpoint ({exc})") from None
        if checkpoint.next_offset < 0:
            raise ValueError(f"{where}: negative next_offset {checkpoint.next_offset}")
        return checkpoint
