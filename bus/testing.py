"""Helpers for tests and benchmarks of code built on the bus, against real Kafka.

Like ``structlog.testing``: supported helpers, not part of the bus's runtime path. The project's
own tests (``tests/``) and benchmarks (``bench/``) both use them, so that a federation, a topic,
a signed configuration or a stream of events is made one way only.

- ports and topics: :func:`free_base_port`, :func:`unique_topic`, :func:`create_topic`;
- a federation started for a run: :func:`running_federation` yields a :class:`Federation`
  (``remote`` agencies each in a network namespace of their own, behind a long link whose
  delay, jitter and loss the run sets: ``Federation.links``, ``bus.local.Link``);
- reaching it: :func:`register` records each cluster's admin identity, :func:`connect` gives a
  client's options for a bootstrap address (mutual TLS as that agency's admin when the
  federation has TLS), :func:`grant_applications` and :func:`grant_bridge` add the ACLs for a
  topic that a test or benchmark created itself;
- records: :func:`produce`, :func:`produce_keyed`, :func:`produce_records`, and
  :func:`consume_all`, which reads to the topic's end and waits for an expected count rather
  than for a quiet moment;
- signed events: :func:`signed_config`, :func:`federated_config`, :class:`EventPlan`,
  :func:`publish_plan`, :func:`count_by_event_id`.

Every wait here ends on a count or a state, never on an idle window: a slow machine makes a test
slower, never wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError

from bus import local
from bus._kafka import client_options, new_topic
from bus.config import AgencySettings, Config, java_home, render_toml
from bus.envelope import peek, seal
from bus.events import template
from bus.keyring import bridge_key_path, generate_bridge_key
from bus.local import Acl, apply_acls, bridge_acls
from bus.local._provisioning import render_policy
from bus.local._tls import app_principal
from bus.signing import SigningKey
from bus.trust import TrustedKey, append_key

__all__ = [
    # ports and topics
    "free_base_port",
    "unique_topic",
    "create_topic",
    # a federation
    "Federation",
    "running_federation",
    # reaching it
    "register",
    "connect",
    "grant_applications",
    "grant_bridge",
    # records
    "produce",
    "produce_keyed",
    "produce_records",
    "consume_all",
    # signed events
    "KEY_START",
    "signed_config",
    "Federated",
    "federated_config",
    "EventPlan",
    "publish_plan",
    "count_by_event_id",
]

_POLL_S = 0.2


# --- ports and topics ----------------------------------------------------------------------


def free_base_port(count: int) -> int:
    """A base port with ``count`` free consecutive ports above it, chosen at random.

    Random, so that two runs side by side on one machine rarely try the same ports; below the
    kernel's ephemeral range, where an outgoing connection of any process may take a port
    between this check and a node's bind.
    """
    rng = random.Random()
    top = min(40000, _ephemeral_floor()) - count
    for _ in range(200):
        base = rng.randrange(20000, max(top, 20002), 2)
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found in 20000..{top}; free some")


def _ephemeral_floor() -> int:
    """The first port the kernel hands to outgoing connections (Linux; 40000 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 40000


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def unique_topic(prefix: str = "test") -> str:
    """``prefix`` and a random suffix: a topic no other test or run uses."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    """Create topic ``name`` (the cluster's default replication: 1 on a lone local node, 3 with
    ``min.insync.replicas`` 2 on a cluster of three) as the cluster's admin, let the agency's
    applications read and write it (:func:`grant_applications`), and let every bridge leaving
    the agency move it (:func:`grant_bridge`), as ``bus local up`` lets them move the events
    topic."""
    admin = AIOKafkaAdminClient(**connect(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([new_topic(name, partitions)])
    finally:
        await admin.close()
    await grant_applications(bootstrap, name)
    registered = _FEDERATIONS.get(bootstrap)
    if registered is not None:
        config, source = registered
        for destination in config.agencies:
            if destination != source:
                await grant_bridge(config, source, destination, [name])


# --- a federation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Federation:
    """Clusters to run against: local nodes (``spec`` set) or external ones (``spec`` None)."""

    config: Config
    spec: local.FederationSpec | None
    links: Mapping[str, local.Link] = field(default_factory=dict)
    """The long link in front of each remote agency (``running_federation(remote=...)``)."""

    def bootstrap(self, agency: str) -> str:
        """``agency``'s bootstrap servers as one string, as aiokafka takes them."""
        return ",".join(self.config.agency(agency).bootstrap_servers)

    @property
    def agencies(self) -> tuple[str, ...]:
        return tuple(self.config.agencies)


@contextlib.contextmanager
def running_federation(
    home: Path,
    agencies: Sequence[str],
    *,
    heap_mb: int = 512,
    partitions: int | None = None,
    insecure_plaintext: bool = False,
    remote: Sequence[str] = (),
    brokers: int = 1,
) -> Iterator[Federation]:
    """A local federation in ``home`` on free ports, started for the ``with`` block.

    Over mutual TLS with ACLs, as ``bus local up`` starts it, unless ``insecure_plaintext``;
    ``brokers`` nodes per agency's cluster (``bus local up --brokers``).
    Its clusters are :func:`register`-ed, so the helpers here reach them as their admin.
    Its nodes are stopped at the end, also when the block raises or starting fails halfway.
    Call it outside an event loop (it runs ``local.up`` with ``asyncio.run``).

    Each agency in ``remote`` runs in a network namespace of its own behind a long link
    (``bus.local.long_link``, root only; its wire logs to ``home/links/AGENCY.log``), reached
    on the link's address; the link adds nothing until the caller shapes it
    (``federation.links[agency].shape(...)``). The links are removed after the nodes stopped.
    """
    with contextlib.ExitStack() as stack:
        links: dict[str, local.Link] = {}
        if remote:
            (home / "links").mkdir(parents=True, exist_ok=True)
        for agency in remote:
            links[agency] = stack.enter_context(
                local.long_link(log=home / "links" / f"{agency}.log")
            )
        spec = local.FederationSpec(
            home=home,
            agencies=tuple(agencies),
            base_port=free_base_port(local.port_count(len(agencies), brokers)),
            heap_mb=heap_mb,
            java_home=java_home(),
            insecure_plaintext=insecure_plaintext,
            brokers=brokers,
            hosts={agency: link.peer_address for agency, link in links.items()},
            launchers={agency: link.launcher for agency, link in links.items()},
        )
        if partitions is not None:
            spec = replace(spec, partitions=partitions)
        try:
            config = asyncio.run(local.up(spec))
            register(config)
            yield Federation(config=config, spec=spec, links=links)
        finally:
            local.down(spec)


# --- reaching it ---------------------------------------------------------------------------

# The clusters the helpers here reach, by bootstrap string, as each agency's admin: a test's or
# benchmark's own reads, writes and topics are the operator's; the code under test connects
# with its own principal (the applications', a bridge's).
_ADMINS: dict[str, AgencySettings] = {}
_FEDERATIONS: dict[str, tuple[Config, str]] = {}
"""Registered bootstrap servers -> their federation's configuration and agency."""


def register(config: Config) -> None:
    """Let the helpers reach ``config``'s clusters as their admin (over mTLS when configured).

    :func:`running_federation` does it for the federation it starts; call it for one started
    otherwise (``local.up`` in a test).
    """
    for agency in config.agencies.values():
        bootstrap = ",".join(agency.bootstrap_servers)
        _ADMINS[bootstrap] = agency.as_identity("admin")
        _FEDERATIONS[bootstrap] = (config, agency.name)


def connect(bootstrap: str) -> dict[str, Any]:
    """aiokafka options for the cluster at ``bootstrap`` as its admin: its servers, and mutual
    TLS if it was :func:`register`-ed with TLS; plaintext for a cluster never registered."""
    admin = _ADMINS.get(bootstrap)
    return client_options(admin) if admin is not None else {"bootstrap_servers": bootstrap}


async def grant_applications(bootstrap: str, topic: str) -> None:
    """Let the agency's applications read and write ``topic`` (a test's own feed); nothing to
    do on a cluster without TLS, which has no ACLs."""
    admin = _ADMINS.get(bootstrap)
    if admin is None or admin.tls is None:
        return
    app = app_principal(admin.name)
    await apply_acls(
        admin,
        [
            Acl(principal=app, operation=op, resource="topic", name=topic)
            for op in ("Read", "Write")
        ],
    )


async def grant_bridge(config: Config, source: str, destination: str, topics: list[str]) -> None:
    """Let the bridge ``source -> destination`` move ``topics`` (as ``bus local up`` lets it
    move the events topic): the ACLs of ``bus.local.bridge_acls`` on both clusters."""
    for agency, acls in bridge_acls(source, destination, config.topics, topics).items():
        admin = _ADMINS.get(",".join(config.agency(agency).bootstrap_servers))
        if admin is not None and admin.tls is not None:
            await apply_acls(admin, acls)


# --- records -------------------------------------------------------------------------------


async def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes | None],
    *,
    producer: dict[str, Any] | None = None,
    **send: Any,
) -> None:
    """Write ``values`` to ``topic`` (idempotent, ``acks=all``) and wait until all are stored.

    ``send`` goes to every ``send`` call (``key=``, ``partition=``); ``producer`` adds
    producer options (``linger_ms``, ``max_batch_size``).
    """
    await _send_all(bootstrap, ((topic, value, send) for value in values), producer)


async def produce_keyed(
    bootstrap: str,
    topic: str,
    items: Iterable[tuple[bytes | None, bytes | None]],
    *,
    producer: dict[str, Any] | None = None,
) -> None:
    """Write ``(key, value)`` pairs to ``topic``, as :func:`produce` writes values."""
    await _send_all(bootstrap, ((topic, value, {"key": key}) for key, value in items), producer)


async def produce_records(
    bootstrap: str,
    topic: str,
    records: Iterable[ConsumerRecord[bytes, bytes]],
    *,
    producer: dict[str, Any] | None = None,
) -> None:
    """Write ``records`` to ``topic`` with their keys and headers (a re-publish, or a copy)."""
    await _send_all(
        bootstrap,
        ((topic, r.value, {"key": r.key, "headers": list(r.headers)}) for r in records),
        producer,
    )


async def _send_all(
    bootstrap: str,
    sends: Iterable[tuple[str, bytes | None, dict[str, Any]]],
    options: dict[str, Any] | None,
) -> None:
    producer = AIOKafkaProducer(
        **connect(bootstrap), acks="all", enable_idempotence=True, **(options or {})
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, **send) for topic, value, send in sends]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str,
    topic: str,
    *,
    expected: int | None = None,
    where: Callable[[ConsumerRecord[bytes, bytes]], bool] | None = None,
    check: Callable[[], object] | None = None,
    timeout_s: float = 60.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """The committed records of ``topic`` that ``where`` accepts (all if None), from its start.

    Reads with ``read_committed`` and no group up to the partitions' end offsets (the last
    stable offsets), so what it returns is everything committed when it looked, duplicates
    included. With ``expected``, it reads on until at least that many records were found (the
    topic may not exist yet), then once more to the end offsets as they are then, so that a
    duplicate written meanwhile is returned too. ``check`` is called between reads: raise from
    it to stop waiting (for example when the process under test died).

    Raises ``TimeoutError`` naming the topic and the counts if ``expected`` is not reached
    within ``timeout_s``.
    """
    records: list[ConsumerRecord[bytes, bytes]] = []
    consumer: AIOKafkaConsumer | None = None
    try:
        async with asyncio.timeout(timeout_s):
            consumer = await _open_reader(bootstrap, topic, wait=expected is not None, check=check)
            if consumer is None:
                return records
            partitions = sorted(consumer.assignment())
            await _read_to_end(consumer, partitions, records, where)
            if expected is None:
                return records
            while len(records) < expected:
                if check is not None:
                    check()
                await asyncio.sleep(_POLL_S)
                await _read_to_end(consumer, partitions, records, where)
            await _read_to_end(consumer, partitions, records, where)
    except TimeoutError:
        wanted = "the end" if expected is None else f"{expected} expected records"
        raise TimeoutError(
            f"{topic} at {bootstrap}: {len(records)} records read, not {wanted}, "
            f"after {timeout_s:.0f} s"
        ) from None
    finally:
        if consumer is not None:
            await consumer.stop()
    return records


async def _open_reader(
    bootstrap: str, topic: str, *, wait: bool, check: Callable[[], object] | None
) -> AIOKafkaConsumer | None:
    """A started consumer with every partition of ``topic`` assigned (no group, nothing
    committed); None if the topic does not exist, unless ``wait``: then it waits for it."""
    while True:
        consumer = AIOKafkaConsumer(
            topic,
            **connect(bootstrap),
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()  # assigns all partitions, or raises if the topic is unknown
        except UnknownTopicOrPartitionError:
            await consumer.stop()
            if not wait:
                return None
        except BaseException:
            await consumer.stop()
            raise
        else:
            return consumer
        if check is not None:
            check()
        await asyncio.sleep(_POLL_S)


async def _read_to_end(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    records: list[ConsumerRecord[bytes, bytes]],
    where: Callable[[ConsumerRecord[bytes, bytes]], bool] | None,
) -> None:
    """Append the records up to the end offsets taken now (control records move the position
    past a transaction's marker without being returned)."""
    if not partitions:
        return
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    while behind := [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
        batch = await consumer.getmany(*behind, timeout_ms=int(_POLL_S * 1000))
        for part in batch.values():
            records.extend(r for r in part if where is None or where(r))


# --- signed events -------------------------------------------------------------------------

KEY_START = datetime(2020, 1, 1, tzinfo=UTC)
"""Keys made by :func:`signed_config` are valid from here, open-ended."""


def signed_config(config: Config, directory: Path) -> Config:
    """``config`` with a new signing key per agency, all trusted by one trust store.

    Writes ``AGENCY.key.pem`` and ``trust.toml`` into ``directory``, and the configuration
    itself as ``bus.toml`` (so that the CLI and child processes can read it).
    """
    directory.mkdir(parents=True, exist_ok=True)
    trust = directory / "trust.toml"
    agencies = {}
    for name, settings in config.agencies.items():
        key = SigningKey.generate()
        key_file = directory / f"{name}.key.pem"
        key_file.write_bytes(key.to_pem())
        key_file.chmod(0o600)  # SigningKey.load refuses a private key others may read
        append_key(trust, TrustedKey(agency=name, public_key=key.public_key, not_before=KEY_START))
        agencies[name] = replace(settings, signing_key=key_file)
    agencies = {name: replace(s, trust_store=trust) for name, s in agencies.items()}
    path = directory / "bus.toml"
    result = replace(config, path=path, agencies=agencies)
    path.write_text(render_toml(result), encoding="utf-8")
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class Federated:
    """A configuration file for a federation, with keys, trust store and policy."""

    config: Config
    path: Path
    keys: dict[str, SigningKey]


def federated_config(
    federation: Federation,
    directory: Path,
    *,
    onward: Iterable[tuple[str, str]] = (),
) -> Federated:
    """Keys, a trust store, a policy (every direction) and ``bus.toml`` under ``directory``.

    ``onward`` lists the (source, destination) directions that allow onward forwarding.
    """
    signed = signed_config(federation.config, directory)
    keys = {
        name: SigningKey.load(settings.signing_key)
        for name, settings in signed.agencies.items()
        if settings.signing_key is not None
    }
    for source, destination in itertools.permutations(federation.agencies, 2):
        # Each direction's audit key, where `bus bridge run` looks: beside the trust store
        # (kept when this folder was made before: a key is never overwritten).
        if not bridge_key_path(directory, source, destination).exists():
            generate_bridge_key(source, destination, directory)
    policy = directory / "policy.toml"
    policy.write_text(render_policy(federation.agencies, onward=onward), encoding="utf-8")
    path = directory / "bus.toml"
    config = replace(signed, path=path, policy_file=policy)
    path.write_text(render_toml(config, header="test federation"), encoding="utf-8")
    return Federated(config=config, path=path, keys=keys)


_AREAS = ("MARITIME_PIRACY", "COUNTER_TERRORISM", "CYBERCRIME", "MAJOR_EVENT_SECURITY")


@dataclass(frozen=True, slots=True, kw_only=True)
class EventPlan:
    """Which events a run publishes from ``origin``, and which of them may cross to
    ``destination`` under :func:`federated_config`'s policy."""

    origin: str
    destination: str
    count: int
    garbage_every: int = 0
    """Every n-th record is garbage (quarantined); 0 for none."""
    ids: list[str] = field(default_factory=list)
    released: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)

    @staticmethod
    def is_released(i: int) -> bool:
        """Event ``i`` is denied if i % 5 == 0 (not releasable) or i % 7 == 0 (TLP RED)."""
        return i % 5 != 0 and i % 7 != 0

    def event(self, i: int) -> dict[str, Any]:
        """Event ``i``, released or not as :meth:`is_released` says."""
        event = template(_AREAS[i % len(_AREAS)], agency=self.origin, event_id=str(uuid.uuid4()))
        event["created_at"] = datetime.now(UTC)
        event["expires_at"] = datetime.now(UTC) + timedelta(days=1)
        event["correlation_id"] = f"case-{i % 37}"
        event["tlp"] = "RED" if i % 7 == 0 else "GREEN"
        event["releasable_to"] = [] if i % 5 == 0 else [self.destination]
        return event


async def publish_plan(
    bootstrap: str,
    topic: str,
    plan: EventPlan,
    key: SigningKey,
    *,
    rate: float | None = None,
) -> None:
    """Publish the plan's events (at ``rate`` per second if given), recording their ids."""
    producer = AIOKafkaProducer(
        **connect(bootstrap), acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futures = []
        started = time.monotonic()
        for i in range(plan.count):
            if plan.garbage_every and i % plan.garbage_every == plan.garbage_every - 1:
                futures.append(await producer.send(topic, b"garbage, not an event", key=b"junk"))
            event = plan.event(i)
            plan.ids.append(event["event_id"])
            (plan.released if plan.is_released(i) else plan.denied).add(event["event_id"])
            value = seal(event, key)
            futures.append(await producer.send(topic, value, key=event["correlation_id"].encode()))
            if rate is not None:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count_by_event_id(
    bootstrap: str,
    topic: str,
    *,
    expected: int,
    check: Callable[[], object] | None = None,
    timeout_s: float = 60.0,
) -> Counter[str]:
    """How often each event id is on ``topic``, once ``expected`` records are there.

    Read to the end offsets after that (``read_committed``, an independent reader), so a
    duplicate shows as a count of 2.
    """
    records = await consume_all(
        bootstrap, topic, expected=expected, check=check, timeout_s=timeout_s
    )
    return Counter(peek(r.value).event["event_id"] for r in records if r.value is not None)
