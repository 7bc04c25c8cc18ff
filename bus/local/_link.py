"""A long link: a network namespace of its own, reached from this one across a slow, lossy wire.

For tests and benchmarks (root only): a node started under :attr:`Link.launcher` and on
:attr:`Link.peer_address` (``FederationSpec.launchers`` and ``hosts``) runs in the namespace,
and everything of this namespace that talks to it crosses the wire: a process of its own
(``_wire``) that carries the packets between two TUN devices, one here and one there, with the
round-trip delay, jitter and loss of :class:`LinkConditions`, or drops them all (a partition).
``tc netem`` on a veth pair would do the same, but not every kernel has ``sch_netem``
(docs/decisions/0018-long-links.md).

Everything a link makes is named from a random token (namespace ``bus-link-TOKEN``, devices
``busTOKENa``/``b``) and its addresses are a /30 of 198.18.0.0/15 (RFC 2544's range for
benchmarks) that no device of this namespace uses, chosen under a lock, so that parallel runs on
one machine never collide. :meth:`Link.close` removes it all (the wire's devices go with its
process); a harness killed outright leaves only the empty namespace, and the wire exits when its
input closes.

Everything here blocks (``ip`` commands, the wire's answers): call it off the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, Any, Final

from bus.errors import LocalClusterError
from bus.local._wire import LinkConditions

__all__ = ["ADDRESS_RANGE", "Link", "LinkConditions", "long_link", "unavailable"]

ADDRESS_RANGE: Final = ipaddress.ip_network("198.18.0.0/15")
"""Where links take their addresses: RFC 2544's network for benchmarks, never routed."""

_COMMAND_TIMEOUT_S: Final = 30.0
_LOCK: Final = Path(tempfile.gettempdir()) / "exchange-bus-links.lock"


def unavailable() -> str | None:
    """Why no link can be made here (not root, no ``ip``, no TUN device); None if one can."""
    if os.geteuid() != 0:
        return "long links need root (network namespaces and TUN devices)"
    if shutil.which("ip") is None:
        return "long links need the `ip` command (iproute2)"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "long links need /dev/net/tun"
    probe = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False
    )
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()[:200]}"
    return None


def _ip(*args: str) -> str:
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise LocalClusterError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()[:300]}")
    return result.stdout


def _subnet(taken: Sequence[ipaddress.IPv4Network], rng: random.Random) -> ipaddress.IPv4Network:
    """A /30 of :data:`ADDRESS_RANGE` that overlaps none of ``taken``."""
    count = ADDRESS_RANGE.num_addresses // 4
    first = int(ADDRESS_RANGE.network_address)
    for _ in range(1000):
        net = ipaddress.IPv4Network((first + 4 * rng.randrange(count), 30))
        if not any(net.overlaps(t) for t in taken):
            return net
    raise LocalClusterError(f"no free /30 left in {ADDRESS_RANGE}; remove stale links")


def _taken() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network of this namespace's devices."""
    nets = []
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        fields = line.split()
        if "inet" in fields:
            nets.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    return nets


class Link:
    """A namespace behind a wire with :class:`LinkConditions`; made by :func:`long_link`."""

    def __init__(self, *, mtu: int = 1500, log: Path | None = None, seed: int | None = None):
        self.token = secrets.token_hex(4)
        self.namespace = f"bus-link-{self.token}"
        self.near_device, self.far_device = f"bus{self.token}a", f"bus{self.token}b"
        self.near_address = self.peer_address = ""
        self.mtu = mtu
        self._conditions = LinkConditions()
        self._log: IO[bytes] | None = None
        self._wire: subprocess.Popen[str] | None = None
        self._namespace_made = False
        self._log_path = log
        self._seed = seed

    @property
    def launcher(self) -> tuple[str, ...]:
        """The command prefix that runs a program in the namespace (``exec``-ing it)."""
        return ("ip", "netns", "exec", self.namespace)

    @property
    def conditions(self) -> LinkConditions:
        """What the wire does now."""
        return self._conditions

    def open(self) -> None:
        """Make the namespace, the wire and the addresses; on failure, undo what was made."""
        try:
            _ip("netns", "add", self.namespace)
            self._namespace_made = True
            _ip("-n", self.namespace, "link", "set", "lo", "up")
            self._start_wire()
            _ip("link", "set", self.far_device, "netns", self.namespace)
            with _LOCK.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # no two links choose the same addresses
                net = _subnet(_taken(), random.Random())
                near, peer = (str(a) for a in net.hosts())
                _ip("addr", "add", f"{near}/30", "dev", self.near_device)
            self.near_address, self.peer_address = near, peer
            _ip("link", "set", self.near_device, "mtu", str(self.mtu), "up")
            _ip("-n", self.namespace, "addr", "add", f"{peer}/30", "dev", self.far_device)
            _ip("-n", self.namespace, "link", "set", self.far_device, "mtu", str(self.mtu), "up")
        except BaseException:
            self.close()
            raise

    def _start_wire(self) -> None:
        if self._log_path is not None:
            self._log = self._log_path.open("ab")
        command = [sys.executable, "-m", "bus.local._wire", self.near_device, self.far_device]
        if self._seed is not None:
            command.append(str(self._seed))
        self._wire = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log if self._log is not None else subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._ask(None)

    def _ask(self, request: dict[str, Any] | None) -> dict[str, Any]:
        wire = self._wire
        if wire is None or wire.stdin is None or wire.stdout is None:
            raise LocalClusterError(f"link {self.namespace}: its wire is not running")
        if request is not None:
            try:
                wire.stdin.write(json.dumps(request) + "\n")
                wire.stdin.flush()
            except OSError as exc:
                raise LocalClusterError(f"link {self.namespace}: its wire is gone ({exc})") from exc
        line = wire.stdout.readline()
        if not line:
            raise LocalClusterError(
                f"link {self.namespace}: its wire exited (status {wire.wait(10)})"
            )
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise LocalClusterError(f"link {self.namespace}: {answer.get('error')}")
        return answer

    def shape(self, conditions: LinkConditions) -> None:
        """From now on, the link adds ``conditions`` (to packets arriving from now on)."""
        self._ask({"conditions": asdict(conditions)})
        self._conditions = conditions

    def partition(self) -> None:
        """Drop every packet, both ways, until :meth:`heal`."""
        self.shape(replace(self._conditions, partitioned=True))

    def heal(self) -> None:
        """End a partition: the delay, jitter and loss of before again."""
        self.shape(replace(self._conditions, partitioned=False))

    def stats(self) -> dict[str, dict[str, int]]:
        """Packets per direction (``out``: towards the namespace, ``in``: back): ``passed``,
        ``lost`` (loss or partition), ``overflowed`` (more than the wire's queue), ``waiting``."""
        answer = self._ask({"stats": True})
        return {"out": answer["out"], "in": answer["in"]}

    def close(self) -> None:
        """Stop the wire (its devices go with it) and delete the namespace; idempotent.

        Stop what runs in the namespace first: a process there keeps it alive, unnamed.
        """
        wire, self._wire = self._wire, None
        if wire is not None:
            if wire.stdin is not None:
                with contextlib.suppress(OSError):
                    wire.stdin.close()
            try:
                wire.wait(10)
            except subprocess.TimeoutExpired:
                wire.kill()
                wire.wait(10)
            if wire.stdout is not None:
                wire.stdout.close()
        if self._namespace_made:
            self._namespace_made = False
            with contextlib.suppress(LocalClusterError):
                _ip("netns", "delete", self.namespace)
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def long_link(
    conditions: LinkConditions | None = None,
    *,
    mtu: int = 1500,
    log: Path | None = None,
    seed: int | None = None,
) -> Iterator[Link]:
    """A :class:`Link` for the ``with`` block, with ``conditions`` (none: a plain wire).

    ``log``: where the wire writes its errors; ``seed``: its losses and jitter repeat.
    Raises ``LocalClusterError`` when one cannot be made here (:func:`unavailable` says why).
    """
    reason = unavailable()
    if reason is not None:
        raise LocalClusterError(reason)
    link = Link(mtu=mtu, log=log, seed=seed)
    link.open()
    try:
        if conditions is not None:
            link.shape(conditions)
        yield link
    finally:
        link.close()
