"""The shape of a local federation: its agencies, ports, folders, and the file that keeps it.

Pure description: nothing here touches a process or a port. The rest of ``bus.local`` starts and
stops what this describes; the public names are re-exported by ``bus.local``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from bus.config import TopicSettings, default_jar_cache
from bus.errors import LocalClusterError
from bus.local._install import kafka_version

__all__ = [
    "DEFAULT_AGENCIES",
    "HOST",
    "MAX_BROKERS",
    "FederationSpec",
    "Node",
    "NodeStatus",
    "load_spec",
    "replication",
    "save_spec",
]

DEFAULT_AGENCIES = ("interpol", "europol")

MAX_BROKERS: Final = 5
"""The largest cluster ``bus local`` runs per agency (one machine's worth)."""

HOST: Final = "127.0.0.1"
"""Every local node listens on loopback only."""


def replication(brokers: int) -> tuple[int, int]:
    """The replication factor and ``min.insync.replicas`` of a cluster of ``brokers`` nodes.

    The cluster's size, three at most, and all copies but one: one node loses nothing to
    a crash of one broker (3 and 2, as Kafka's own transaction tests run), a lone node 1 and 1.
    """
    factor = min(brokers, 3)
    return factor, max(1, factor - 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class FederationSpec:
    """The shape of a local federation: which agencies, where its state is, which ports."""

    home: Path
    agencies: tuple[str, ...] = DEFAULT_AGENCIES
    base_port: int = 19092
    heap_mb: int = 512
    partitions: int = 6
    topics: TopicSettings = field(default_factory=TopicSettings)
    java_home: Path | None = None
    jars: Path | None = None
    insecure_plaintext: bool = False
    """Plaintext listeners with no authentication and no authorizer: development only.

    The default is mutual TLS on every listener and ACLs (``bus.local._tls``, ``_acls``)."""
    hosts: Mapping[str, str] = field(default_factory=dict)
    """The address an agency's node listens on, where not loopback (:data:`HOST`): the node
    behind a long link (``bus.local._link``) listens on its end of the link. Not saved in
    ``local.toml``: a link lives as long as the run that made it."""
    launchers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """A command that an agency's node runs under (its JVM command line appended), such as
    ``("ip", "netns", "exec", NAME)`` for a node in a network namespace of its own. The
    command must ``exec`` the JVM, so that the recorded pid is the node's."""
    brokers: int = 1
    """Nodes in each agency's cluster, each a broker and a voter of the KRaft controller quorum.

    One by default; with three (``bus local up --brokers 3``) every topic is replicated three
    times and a write needs two in-sync replicas (docs/decisions/0016-replicated-clusters.md)."""

    def __post_init__(self) -> None:
        if not self.agencies:
            raise ValueError("agencies: give at least one agency")
        if len(set(self.agencies)) != len(self.agencies):
            raise ValueError(f"agencies: each agency once, got {', '.join(self.agencies)}")
        if not 1024 <= self.base_port <= 65535 - 2 * len(self.agencies):
            raise ValueError(f"base_port: {self.base_port} is outside 1024..65535")
        if not 128 <= self.heap_mb <= 512:
            raise ValueError(f"heap_mb: {self.heap_mb} MiB; give 128..512 MiB a node")
        if self.partitions < 1:
            raise ValueError(f"partitions: {self.partitions}; give at least 1")
        strangers = sorted((set(self.hosts) | set(self.launchers)) - set(self.agencies))
        if strangers:
            raise ValueError(f"hosts, launchers: {', '.join(strangers)} is not an agency")
        if not 1 <= self.brokers <= MAX_BROKERS:
            raise ValueError(f"brokers: {self.brokers}; give 1..{MAX_BROKERS} nodes a cluster")
        if self.base_port > 65535 - 2 * len(self.agencies) * self.brokers:
            raise ValueError(f"base_port: {self.base_port} is outside 1024..65535")

    def launcher(self, agency: str) -> tuple[str, ...]:
        """The command ``agency``'s node runs under (empty: none)."""
        return tuple(self.launchers.get(agency, ()))

    @property
    def replication_factor(self) -> int:
        """How many copies of each partition a cluster keeps (:func:`replication`)."""
        return replication(self.brokers)[0]

    @property
    def min_insync_replicas(self) -> int:
        """How many in-sync copies an ``acks=all`` write needs (:func:`replication`)."""
        return replication(self.brokers)[1]

    @property
    def spec_file(self) -> Path:
        return self.home / "local.toml"

    @property
    def config_file(self) -> Path:
        return self.home / "bus.toml"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def policy_file(self) -> Path:
        return self.home / "policy.toml"

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    @property
    def jar_dir(self) -> Path:
        return self.jars or default_jar_cache(kafka_version())

    def nodes(self) -> list[Node]:
        """Every node of every agency's cluster, agency by agency, with its ports and folders.

        Node ``k`` (0-based) of agency ``i`` listens on ``base_port + 2*(i*brokers + k)``
        (clients) and the port after it (its controller); a lone node keeps the folder
        ``nodes/<agency>``, the nodes of a larger cluster ``nodes/<agency>-<id>``.
        """
        b = self.brokers
        return [
            Node(
                agency=agency,
                broker_port=self.base_port + 2 * (i * b + k),
                controller_port=self.base_port + 2 * (i * b + k) + 1,
                dir=self.home / "nodes" / (agency if b == 1 else f"{agency}-{k + 1}"),
                node_id=k + 1,
                brokers=b,
                host=self.hosts.get(agency, HOST),
            )
            for i, agency in enumerate(self.agencies)
            for k in range(b)
        ]

    def cluster(self, agency: str) -> list[Node]:
        """The nodes of ``agency``'s cluster."""
        return [node for node in self.nodes() if node.agency == agency]

    def bootstrap_servers(self, agency: str) -> tuple[str, ...]:
        """Every node of ``agency``'s cluster, as clients list them."""
        return tuple(node.bootstrap for node in self.cluster(agency))


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One node of an agency's KRaft cluster: a broker, and a voter of its controller quorum."""

    agency: str
    broker_port: int
    controller_port: int
    dir: Path
    host: str = HOST
    """The address both listeners are on (loopback unless the spec says otherwise)."""
    node_id: int = 1
    """Its ``node.id``: 1..``brokers``."""
    brokers: int = 1
    """How many nodes its cluster has."""

    @property
    def name(self) -> str:
        """How ``bus local`` names it: the agency for a lone node, else ``<agency>-<id>``."""
        return self.agency if self.brokers == 1 else f"{self.agency}-{self.node_id}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.broker_port}"

    @property
    def properties_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.dir / "log4j2.properties"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "server.log"

    @property
    def console_file(self) -> Path:
        return self.dir / "logs" / "console.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "node.pid"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    """What ``bus local status`` shows for one node."""

    node: Node
    pid: int | None
    reachable: bool
    cluster_id: str | None = None
    topics: tuple[str, ...] = ()
    rss_mib: float | None = None
    certificates: tuple[tuple[str, datetime], ...] = ()
    """Each certificate of the agency (CA, node, principals) and when it expires."""

    @property
    def running(self) -> bool:
        return self.pid is not None


# --- the spec on disk ---------------------------------------------------------------------


def load_spec(home: Path, **overrides: object) -> FederationSpec:
    """The federation last started from ``home`` (``local.toml``), with ``overrides`` applied.

    Without a saved spec, the defaults (interpol and europol) with ``overrides``.
    """
    saved: dict[str, object] = {}
    spec_file = home / "local.toml"
    if spec_file.exists():
        try:
            raw = tomllib.loads(spec_file.read_text(encoding="utf-8"))
            saved = {
                "agencies": tuple(raw["agencies"]),
                "base_port": int(raw["base_port"]),
                "heap_mb": int(raw["heap_mb"]),
                "partitions": int(raw["partitions"]),
                "insecure_plaintext": bool(raw.get("insecure_plaintext", False)),
                "brokers": int(raw.get("brokers", 1)),
            }
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise LocalClusterError(
                f"{spec_file}: unreadable ({exc}); fix it, or run `bus local reset`"
            ) from exc
    saved.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return FederationSpec(home=home, **saved)  # type: ignore[arg-type]  # validated in __post_init__
    except (TypeError, ValueError) as exc:
        raise LocalClusterError(f"local federation: {exc}") from exc


def save_spec(spec: FederationSpec) -> None:
    """Keep ``spec`` in its home (``local.toml``) for later commands."""
    agencies = ", ".join(f'"{a}"' for a in spec.agencies)
    spec.spec_file.write_text(
        "# The local federation's shape, written by `bus local up`.\n"
        f"agencies = [{agencies}]\n"
        f"base_port = {spec.base_port}\n"
        f"heap_mb = {spec.heap_mb}\n"
        f"partitions = {spec.partitions}\n"
        f"insecure_plaintext = {'true' if spec.insecure_plaintext else 'false'}\n"
        f"brokers = {spec.brokers}\n",
        encoding="utf-8",
    )
