"""Running the demo: publish the traffic at every agency, watch the bridges, settle, summarise.

The demo starts no process of its own: it publishes through ``bus.publisher`` (batch-signed
events, as an agency's systems would), writes the forgeries raw with a plain producer, and reads
the bridges' ``/metrics``. So it leaves the federation as it found it, with the events it
published (and their mirrored copies, audit and quarantine records) added.

After ``duration_s`` (or a stop request), it stops publishing and waits until every direction's
bridge has decided on every record the demo wrote to its source (forwarded + denied +
quarantined), at most ``settle_timeout_s``; the summary says whether it got there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka import AIOKafkaProducer

from bus._kafka import client_options, translated
from bus._policy_file import load_policy
from bus.config import Config
from bus.demo._bridges import BridgeCounts, scrape
from bus.demo._hits import Correlations, HitReader
from bus.demo._traffic import Traffic
from bus.errors import ConfigError
from bus.policy import Policy, ReleaseRequest
from bus.publisher import open_publisher
from bus.signing import SigningKey

__all__ = ["Direction", "DirectionSummary", "Summary", "run_demo"]

_SCRAPE_EVERY_S: Final = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Direction:
    """One bridge direction and the URL of its ``/metrics``."""

    source: str
    destination: str
    url: str

    @property
    def name(self) -> str:
        return f"{self.source} -> {self.destination}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectionSummary:
    """What the demo wrote to a direction's source, what the policy expects, what the bridge did."""

    source: str
    destination: str
    published: int
    """Signed events the demo published at the source."""
    forged: int
    """Hostile records the demo wrote raw to the source."""
    expected_forwarded: int
    """Of ``published``, how many the policy file releases to the destination."""
    bridge: BridgeCounts
    """The bridge's counts grown since the demo started (lag: now)."""

    @property
    def written(self) -> int:
        return self.published + self.forged

    @property
    def settled(self) -> bool:
        return self.bridge.processed >= self.written

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "published": self.published,
            "forged": self.forged,
            "expected_forwarded": self.expected_forwarded,
            "forwarded": self.bridge.forwarded,
            "denied": dict(sorted(self.bridge.denied.items())),
            "quarantined": dict(sorted(self.bridge.quarantined.items())),
            "latency_p50_s": self.bridge.latency(0.5),
            "latency_p99_s": self.bridge.latency(0.99),
            "lag": self.bridge.lag,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """The demo's state: per direction, and the forgeries by kind per writer."""

    directions: tuple[DirectionSummary, ...]
    forged: dict[str, dict[str, int]] = field(default_factory=dict)
    correlations: tuple[Correlations, ...] = ()
    """Per agency, the hits its correlator wrote since the start (``bus.correlations``)."""
    elapsed_s: float = 0.0
    publishing: bool = True

    @property
    def settled(self) -> bool:
        return all(d.settled for d in self.directions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "elapsed_s": round(self.elapsed_s, 1),
            "settled": self.settled,
            "directions": [d.as_dict() for d in self.directions],
            "forged": self.forged,
            "correlations": [c.as_dict() for c in self.correlations],
        }


class _Tally:
    """The demo's own counts, per source agency."""

    def __init__(self, directions: Sequence[Direction]) -> None:
        self.published: Counter[str] = Counter()
        self.forged: dict[str, Counter[str]] = {}
        self.expected: Counter[tuple[str, str]] = Counter()
        self.directions = directions

    def summary(
        self, now: dict[str, BridgeCounts], start: dict[str, BridgeCounts], **kw: Any
    ) -> Summary:
        return Summary(
            directions=tuple(
                DirectionSummary(
                    source=d.source,
                    destination=d.destination,
                    published=self.published[d.source],
                    forged=sum(self.forged.get(d.source, Counter()).values()),
                    expected_forwarded=self.expected[(d.source, d.destination)],
                    bridge=now[d.name].since(start[d.name]),
                )
                for d in self.directions
            ),
            forged={a: dict(sorted(c.items())) for a, c in sorted(self.forged.items())},
            **kw,
        )


async def _scrape_all(directions: Sequence[Direction]) -> dict[str, BridgeCounts]:
    results = await asyncio.gather(
        *(
            asyncio.to_thread(scrape, d.url, source=d.source, destination=d.destination)
            for d in directions
        )
    )
    return {d.name: r for d, r in zip(directions, results, strict=True)}


async def run_demo(
    config: Config,
    directions: Sequence[Direction],
    *,
    duration_s: float | None,
    rate: float = 20.0,
    forge_every: int = 25,
    seed: int | None = None,
    settle_timeout_s: float = 120.0,
    stop: asyncio.Event | None = None,
    on_update: Callable[[Summary], None] = lambda _: None,
) -> Summary:
    """Publish at every source agency of ``directions`` until ``duration_s`` passed or ``stop``
    is set, then wait for the bridges to settle; the final :class:`Summary`.

    ``rate`` is events per second per agency; every ``forge_every``-th record (0: none) is a
    forgery. ``on_update`` gets a summary about every second (for a live view).
    """
    if config.policy_file is None:
        raise ConfigError(
            f"{config.path or 'configuration'}: [policy] file is not set; the demo needs the "
            "release policy the bridges apply"
        )
    policy = load_policy(config.policy_file)
    stop = stop or asyncio.Event()
    agencies = list(dict.fromkeys(d.source for d in directions))
    tally = _Tally(directions)
    traffic = Traffic(sorted({*agencies, *(d.destination for d in directions)}), seed=seed)
    readers = [HitReader(a, config.agency(a)) for a in traffic.agencies]
    async with contextlib.AsyncExitStack() as stack:
        for reader in readers:
            await reader.start()
            stack.push_async_callback(reader.stop)
        return await _run(
            config,
            directions,
            policy,
            stop,
            agencies,
            tally,
            traffic,
            readers,
            duration_s=duration_s,
            rate=rate,
            forge_every=forge_every,
            settle_timeout_s=settle_timeout_s,
            on_update=on_update,
        )


async def _run(
    config: Config,
    directions: Sequence[Direction],
    policy: Policy,
    stop: asyncio.Event,
    agencies: Sequence[str],
    tally: _Tally,
    traffic: Traffic,
    readers: Sequence[HitReader],
    *,
    duration_s: float | None,
    rate: float,
    forge_every: int,
    settle_timeout_s: float,
    on_update: Callable[[Summary], None],
) -> Summary:
    start = await _scrape_all(directions)
    began = time.monotonic()
    latest = start

    async def publish(agency: str) -> None:
        key_path = config.agency(agency).signing_key
        if key_path is None:
            raise ConfigError(f"{config.path}: agencies.{agency}.signing_key is not set")
        key = SigningKey.load(key_path)
        raw = AIOKafkaProducer(
            **client_options(config.agency(agency), client_id=f"bus-demo-forger-{agency}"),
            acks="all",
            enable_idempotence=True,
        )
        with translated(f"cannot connect the demo's raw producer to {agency}'s cluster"):
            await raw.start()
        try:
            async with open_publisher(config, agency) as publisher:
                i = 0
                while not stop.is_set():
                    if duration_s is not None and time.monotonic() - began >= duration_s:
                        break
                    i += 1
                    if forge_every and i % forge_every == 0:
                        forged = traffic.forgery(agency, key)
                        await raw.send_and_wait(
                            config.topics.events,
                            forged.value,
                            key=forged.key,
                            headers=forged.headers,
                        )
                        tally.forged.setdefault(agency, Counter())[forged.kind] += 1
                    else:
                        event = traffic.event(agency)
                        await publisher.publish(event)
                        tally.published[agency] += 1
                        _expect(policy, event, agency, directions, tally)
                    ahead = i / rate - (time.monotonic() - began)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        finally:
            await raw.stop()

    async def watch(publishing: asyncio.Task[None]) -> Summary:
        nonlocal latest
        deadline: float | None = None
        while True:
            await asyncio.sleep(_SCRAPE_EVERY_S)
            latest = await _scrape_all(directions)
            summary = tally.summary(
                latest,
                start,
                correlations=tuple(await asyncio.gather(*(r.poll() for r in readers))),
                elapsed_s=time.monotonic() - began,
                publishing=not publishing.done(),
            )
            on_update(summary)
            if publishing.done():
                deadline = deadline or time.monotonic() + settle_timeout_s
                if summary.settled or time.monotonic() >= deadline:
                    return summary

    async with asyncio.TaskGroup() as tasks:
        publishing = tasks.create_task(_publish_all(publish, agencies), name="bus-demo-publish")
        watching = tasks.create_task(watch(publishing), name="bus-demo-watch")
    return replace(watching.result(), publishing=False)


async def _publish_all(publish: Callable[[str], Any], agencies: Sequence[str]) -> None:
    async with asyncio.TaskGroup() as tasks:
        for agency in agencies:
            tasks.create_task(publish(agency), name=f"bus-demo-publish-{agency}")


def _expect(
    policy: Policy,
    event: dict[str, Any],
    source: str,
    directions: Sequence[Direction],
    tally: _Tally,
) -> None:
    now = datetime.now(UTC)
    for d in directions:
        if d.source != source:
            continue
        request = ReleaseRequest.from_event(
            event, source=source, destination=d.destination, now=now
        )
        if policy.decide(request).allowed:
            tally.expected[(source, d.destination)] += 1
