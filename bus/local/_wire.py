"""The wire of a long link: a process that carries IP packets between two TUN devices, late.

``python -m bus.local._wire NEAR FAR`` creates the TUN devices ``NEAR`` and ``FAR`` (the
harness, ``_link``, moves ``FAR`` into a network namespace of its own and gives both ends an
address), prints ``ready``, and from then on every packet the kernel routes into one device
comes out of the other after the link's one-way delay, with jitter, or is lost. It is what
``tc netem`` does on a veth pair, done in user space, because ``sch_netem`` is not in every
kernel (it is not in the one these tests run on; docs/decisions/0018-long-links.md).

Conditions (:class:`LinkConditions`) are for the round trip: each direction is delayed by half
the round trip, plus or minus half the jitter (uniform), and loses each packet with the given
probability. Packets of one direction never overtake each other (a late one holds back those
behind it, as on a real path, where reordering is rare): jitter varies the delay, not the order.
A partition drops every packet both ways; connections stay open, as behind a real partition,
until their own timeouts end them. At most :data:`LIMIT` packets per direction wait on the wire
(netem's default queue, too); more are dropped.

Commands, one JSON object a line on stdin, each answered with one line on stdout:
``{"conditions": {...}}`` sets them (the fields of :class:`LinkConditions`), ``{"stats": true}``
answers the packet counts per direction (``out``: from ``NEAR`` to ``FAR``; ``in``: back). End
of input ends the process, and with it both devices: a harness that dies leaves no link behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import random
import struct
import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Final

__all__ = ["LIMIT", "Direction", "LinkConditions", "main"]

LIMIT: Final = 1000
_TUNSETIFF: Final = 0x400454CA
_IFF_TUN: Final = 0x0001
_IFF_NO_PI: Final = 0x1000
_READS_PER_WAKE: Final = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConditions:
    """What a long link does to packets: round-trip delay and jitter, loss, partition."""

    rtt_ms: float = 0.0
    """Round-trip time the link adds: half of it each way."""
    jitter_ms: float = 0.0
    """The round trip varies by up to this much: each way by up to half of it, either side."""
    loss_percent: float = 0.0
    """Each packet, each way, is lost with this probability (in percent)."""
    partitioned: bool = False
    """Every packet is lost, both ways."""

    def __post_init__(self) -> None:
        if self.rtt_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"rtt_ms {self.rtt_ms}, jitter_ms {self.jitter_ms}: not below 0")
        if self.jitter_ms > self.rtt_ms:
            raise ValueError(f"jitter_ms {self.jitter_ms}: give at most rtt_ms ({self.rtt_ms})")
        if not 0 <= self.loss_percent <= 100:
            raise ValueError(f"loss_percent {self.loss_percent}: give 0..100")

    def describe(self) -> str:
        """``25 ms ± 5 ms RTT, 1% loss``, or ``partitioned``."""
        if self.partitioned:
            return "partitioned"
        text = f"{self.rtt_ms:g} ms"
        if self.jitter_ms:
            text += f" ± {self.jitter_ms:g} ms"
        text += " RTT"
        if self.loss_percent:
            text += f", {self.loss_percent:g}% loss"
        return text


@dataclass(slots=True)
class Direction:
    """One way along the wire: when each packet is due out, and what happened to them."""

    rng: random.Random
    conditions: LinkConditions = field(default_factory=LinkConditions)
    passed: int = 0
    lost: int = 0
    overflowed: int = 0
    waiting: int = 0
    _last_due: float = 0.0

    def due(self, now: float) -> float | None:
        """When a packet that arrived ``now`` (seconds) goes out; None: it is lost."""
        c = self.conditions
        if c.partitioned or (c.loss_percent and self.rng.random() * 100 < c.loss_percent):
            self.lost += 1
            return None
        if self.waiting >= LIMIT:
            self.overflowed += 1
            return None
        delay = c.rtt_ms / 2
        if c.jitter_ms:
            delay += self.rng.uniform(-c.jitter_ms / 2, c.jitter_ms / 2)
        self._last_due = max(now + max(0.0, delay) / 1000, self._last_due)
        self.waiting += 1
        return self._last_due

    def stats(self) -> dict[str, int]:
        return {
            "passed": self.passed,
            "lost": self.lost,
            "overflowed": self.overflowed,
            "waiting": self.waiting,
        }


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class _Wire:
    def __init__(self, near: int, far: int, seed: int | None) -> None:
        rng = random.Random(seed)
        self.out = Direction(random.Random(rng.random()))
        self.back = Direction(random.Random(rng.random()))
        self.near, self.far = near, far
        self.done = asyncio.Event()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.near, self._carry, loop, self.near, self.far, self.out)
        loop.add_reader(self.far, self._carry, loop, self.far, self.near, self.back)

    def _carry(self, loop: asyncio.AbstractEventLoop, src: int, dst: int, way: Direction) -> None:
        for _ in range(_READS_PER_WAKE):
            try:
                packet = os.read(src, 65536)
            except BlockingIOError:
                return
            except OSError:
                self.done.set()  # the device is gone
                return
            due = way.due(loop.time())
            if due is not None:
                loop.call_at(due, self._deliver, dst, packet, way)

    @staticmethod
    def _deliver(dst: int, packet: bytes, way: Direction) -> None:
        way.waiting -= 1
        try:
            os.write(dst, packet)
        except OSError:  # the far end is down (a link taken down): the packet is lost
            way.lost += 1
        else:
            way.passed += 1

    def command(self, line: str) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if "conditions" in request:
                conditions = LinkConditions(**request["conditions"])
                self.out.conditions = self.back.conditions = conditions
            return {
                "ok": True,
                "conditions": asdict(self.out.conditions),
                "out": self.out.stats(),
                "in": self.back.stats(),
            }
        except (ValueError, TypeError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _answer(reply: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


async def _serve(near_name: str, far_name: str, seed: int | None) -> None:
    loop = asyncio.get_running_loop()
    near, far = _open_tun(near_name), _open_tun(far_name)
    wire = _Wire(near, far, seed)
    wire.attach(loop)

    def obey(line: str) -> None:
        _answer(wire.command(line))

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip():
                loop.call_soon_threadsafe(obey, line)
        loop.call_soon_threadsafe(wire.done.set)

    _answer({"ok": True, "ready": [near_name, far_name]})
    threading.Thread(target=read_commands, name="commands", daemon=True).start()
    try:
        await wire.done.wait()
    finally:
        for fd in (near, far):
            loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        sys.stderr.write("usage: python -m bus.local._wire NEAR FAR [SEED]\n")
        return 2
    seed = int(argv[2]) if len(argv) == 3 else None
    asyncio.run(_serve(argv[0], argv[1], seed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
