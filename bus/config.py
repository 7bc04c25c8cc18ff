"""The federation's configuration: one TOML file that every ``bus`` command and the tests read.

``bus local up`` writes it for the local federation; for real clusters an operator writes it::

    [topics]
    events = "intel.events"          # what an agency's own systems publish
    quarantine = "bus.quarantine"    # what could not be decoded, verified or accepted
    audit = "bus.audit"              # one record per bridge decision

    [agencies.interpol]
    bootstrap_servers = ["127.0.0.1:19092"]
    signing_key = "keys/interpol.key.pem"    # paths are relative to this file
    trust_store = "keys/trust.toml"

    [agencies.interpol.tls]                  # optional: mutual TLS to this cluster
    ca_file = "tls/interpol/ca.pem"          # the CA that signed the brokers' certificates
    cert_file = "tls/interpol/interpol-app.pem"      # the applications' identity (default)
    key_file = "tls/interpol/interpol-app.key.pem"

    [agencies.interpol.tls.identities.admin]   # other identities on this cluster, by role
    cert_file = "tls/interpol/interpol-admin.pem"  # (ca_file: the table's above, unless given)
    key_file = "tls/interpol/interpol-admin.key.pem"

    [agencies.interpol.tls.identities."bridge.interpol.europol"]   # what the bridge
    cert_file = "tls/interpol/bridge.interpol.europol.pem"         # interpol -> europol uses
    key_file = "tls/interpol/bridge.interpol.europol.key.pem"      # on interpol's cluster

    [policy]
    file = "policy.toml"

Environment variables are read here (and by the CLI) only:

- ``BUS_CONFIG``: the configuration file (default ``$BUS_HOME/bus.toml``);
- ``BUS_HOME``: the local federation's state directory (default
  ``$XDG_STATE_HOME/exchange-bus``, else ``~/.local/state/exchange-bus``);
- ``BUS_KAFKA_JARS``: the folder of Kafka jars (default ``$XDG_CACHE_HOME/exchange-bus/...``);
- ``JAVA_HOME``: the Java 17+ runtime that runs the local Kafka nodes.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bus.errors import ConfigError
from bus.trust import AGENCY_ID

__all__ = [
    "AgencySettings",
    "Config",
    "TlsSettings",
    "TopicSettings",
    "bridge_identity",
    "correlator_identity",
    "default_config_path",
    "default_home",
    "default_jar_cache",
    "java_home",
    "load_config",
    "render_toml",
]

_SERVER: Final = re.compile(r"[^:\s]+:\d{1,5}")
_IDENTITY: Final = re.compile(r"[a-z][a-z0-9_.-]{0,127}")
"""An identity's name: ``admin``, ``bridge.<source>.<destination>``, ..."""
"""``host:port`` of a bootstrap server; matched whole (``fullmatch``: no trailing newline)."""


def correlator_identity(agency: str) -> str:
    """The TLS identity ``agency``'s correlator (``bus correlate run``) uses on its cluster."""
    return f"correlator.{agency}"


def bridge_identity(source: str, destination: str) -> str:
    """The TLS identity the bridge ``source -> destination`` uses on both of its clusters.

    Agency ids hold no dots, so no two directions share a name.
    """
    return f"bridge.{source}.{destination}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """Mutual TLS to one cluster: the CA that signed the brokers, and this client's certificate."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicSettings:
    """The names of the bus topics, the same on every cluster."""

    events: str = "intel.events"
    quarantine: str = "bus.quarantine"
    audit: str = "bus.audit"

    def mirror_of(self, origin: str) -> str:
        """The mirrored feed of ``origin``'s events on a peer's cluster: ``<origin>.<events>``."""
        return f"{origin}.{self.events}"

    def mirrored_from(self, topic: str) -> str | None:
        """The agency whose mirrored events feed ``topic`` is (``<agency>.<events>``), else
        ``None``. A bridge may mirror other topics too: ``Config.mirror_source`` knows them."""
        agency, dot, rest = topic.partition(".")
        if dot and rest == self.events and AGENCY_ID.fullmatch(agency):
            return agency
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgencySettings:
    """How to reach one agency's cluster, and where its keys are.

    Plain data: ``bus._kafka.client_options`` turns it into aiokafka arguments.
    """

    name: str
    bootstrap_servers: tuple[str, ...]
    tls: TlsSettings | None = None
    """How this process connects: the applications' identity unless :meth:`as_identity` chose
    another."""
    identities: Mapping[str, TlsSettings] = field(default_factory=dict)
    """Other TLS identities on this cluster by role (``admin``, ``bridge.<src>.<dst>``)."""
    signing_key: Path | None = None
    trust_store: Path | None = None

    def as_identity(self, role: str) -> AgencySettings:
        """These settings with the TLS identity ``role`` in place of the applications'.

        A cluster reached without TLS has no identities: the settings are returned as they
        are. With TLS, a missing identity is a ConfigError: falling back to the applications'
        certificate would run a bridge or an admin under the wrong principal.
        """
        if self.tls is None:
            return self
        try:
            chosen = self.identities[role]
        except KeyError:
            known = ", ".join(sorted(self.identities)) or "none"
            raise ConfigError(
                f"agency {self.name}: no TLS identity {role!r} in "
                f'[agencies.{self.name}.tls.identities."{role}"] (configured: {known}); add its '
                "cert_file and key_file (`bus local up` writes them for the local federation)"
            ) from None
        return AgencySettings(
            name=self.name,
            bootstrap_servers=self.bootstrap_servers,
            tls=chosen,
            identities=self.identities,
            signing_key=self.signing_key,
            trust_store=self.trust_store,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole federation as this machine sees it."""

    path: Path | None
    agencies: Mapping[str, AgencySettings]
    topics: TopicSettings = field(default_factory=TopicSettings)
    policy_file: Path | None = None

    def agency(self, name: str) -> AgencySettings:
        """The settings of agency ``name``; a ConfigError names the file and the known agencies."""
        try:
            return self.agencies[name]
        except KeyError:
            known = ", ".join(sorted(self.agencies)) or "none"
            raise ConfigError(
                f"{self.path or 'configuration'}: no agency {name!r} in [agencies] "
                f"(configured: {known})"
            ) from None

    def mirror_source(self, topic: str, *, reader: str) -> str | None:
        """The agency whose bridge writes ``topic`` on ``reader``'s cluster, else ``None``.

        A bridge mirrors any source topic ``T`` of agency ``A`` (``bus bridge run --topics``)
        as ``A.T`` (MirrorMaker 2's convention), so ``<agency>.<anything>`` is a mirror when
        ``<agency>`` is one of the configured agencies other than ``reader`` (agency ids hold
        no ``.``, so the first ``.`` ends it). ``reader``'s own prefix is not a mirror: no
        bridge writes into the cluster it reads.
        """
        agency, dot, rest = topic.partition(".")
        if not dot or not rest or agency == reader or agency not in self.agencies:
            return None
        return agency if AGENCY_ID.fullmatch(agency) else None


def default_home() -> Path:
    """The local federation's state directory (``BUS_HOME``, else the XDG state directory)."""
    if home := os.environ.get("BUS_HOME"):
        return Path(home)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "exchange-bus"


def default_config_path() -> Path:
    """The configuration file (``BUS_CONFIG``, else ``bus.toml`` in the state directory)."""
    if path := os.environ.get("BUS_CONFIG"):
        return Path(path)
    return default_home() / "bus.toml"


def default_jar_cache(kafka_version: str) -> Path:
    """The folder that holds the Kafka jars of ``kafka_version`` (``BUS_KAFKA_JARS`` overrides)."""
    if path := os.environ.get("BUS_KAFKA_JARS"):
        return Path(path)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "exchange-bus" / f"kafka-{kafka_version}" / "lib"


def java_home() -> Path | None:
    """``JAVA_HOME``, when set: the local nodes run ``$JAVA_HOME/bin/java``."""
    value = os.environ.get("JAVA_HOME")
    return Path(value) if value else None


def load_config(path: Path | None = None) -> Config:
    """Read the configuration file (``path``, else ``BUS_CONFIG``, else the state directory's).

    Raises ConfigError naming the file and the key when it is missing or wrong.
    """
    path = path or default_config_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: configuration file not found; run `bus local up` to start the local "
            "federation (it writes this file), or pass --config / set BUS_CONFIG"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from exc
    return _parse(raw, path)


def _parse(raw: Mapping[str, Any], path: Path) -> Config:
    reader = _Reader(path)
    reader.no_unknown(raw, "", {"topics", "agencies", "policy"})
    topics_raw = reader.table(raw, "", "topics", required=False)
    reader.no_unknown(topics_raw, "topics", {"events", "quarantine", "audit"})
    topics = TopicSettings(
        **{key: reader.string(topics_raw, "topics", key) for key in topics_raw},
    )
    agencies_raw = reader.table(raw, "", "agencies", required=True)
    if not agencies_raw:
        raise ConfigError(f"{path}: [agencies] is empty; configure at least one agency")
    agencies = {name: reader.agency(name, value) for name, value in agencies_raw.items()}
    policy_raw = reader.table(raw, "", "policy", required=False)
    reader.no_unknown(policy_raw, "policy", {"file"})
    policy_file = reader.path(policy_raw, "policy", "file") if "file" in policy_raw else None
    return Config(path=path, agencies=agencies, topics=topics, policy_file=policy_file)


class _Reader:
    """Typed access to the parsed TOML with errors that name the file and the key."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def _fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self._path}: {where}: {message}")

    def no_unknown(self, table: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            expected = ", ".join(sorted(allowed))
            raise self._fail(
                f"[{where}]" if where else "top level",
                f"unknown key {unknown[0]!r} (expected one of: {expected})",
            )

    def table(
        self, parent: Mapping[str, Any], where: str, key: str, *, required: bool
    ) -> Mapping[str, Any]:
        full = f"{where}.{key}" if where else key
        if key not in parent:
            if required:
                raise self._fail(f"[{full}]", "missing table")
            return {}
        value = parent[key]
        if not isinstance(value, dict):
            raise self._fail(full, f"expected a table, got {type(value).__name__}")
        return value

    def string(self, table: Mapping[str, Any], where: str, key: str) -> str:
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise self._fail(f"{where}.{key}", "expected a non-empty string")
        return value

    def path(self, table: Mapping[str, Any], where: str, key: str) -> Path:
        value = Path(self.string(table, where, key)).expanduser()
        return value if value.is_absolute() else self._path.parent / value

    def agency(self, name: str, raw: Any) -> AgencySettings:
        where = f"agencies.{name}"
        if not AGENCY_ID.fullmatch(name):
            raise self._fail(
                f"[{where}]",
                "agency ids are lowercase letters, digits, '-' and '_' (at most 63, "
                "starting with a letter)",
            )
        if not isinstance(raw, dict):
            raise self._fail(where, f"expected a table, got {type(raw).__name__}")
        self.no_unknown(raw, where, {"bootstrap_servers", "tls", "signing_key", "trust_store"})
        servers = raw.get("bootstrap_servers")
        if (
            not isinstance(servers, list)
            or not servers
            or not all(isinstance(s, str) and _SERVER.fullmatch(s) for s in servers)
        ):
            raise self._fail(
                f"{where}.bootstrap_servers",
                'expected a non-empty list of "host:port" strings',
            )
        tls = None
        identities: dict[str, TlsSettings] = {}
        if "tls" in raw:
            tls_raw = self.table(raw, where, "tls", required=True)
            self.no_unknown(
                tls_raw, f"{where}.tls", {"ca_file", "cert_file", "key_file", "identities"}
            )
            tls = TlsSettings(
                ca_file=self.path(tls_raw, f"{where}.tls", "ca_file"),
                cert_file=self.path(tls_raw, f"{where}.tls", "cert_file"),
                key_file=self.path(tls_raw, f"{where}.tls", "key_file"),
            )
            identities_raw = self.table(tls_raw, f"{where}.tls", "identities", required=False)
            for role in identities_raw:
                identities[role] = self.identity(
                    f"{where}.tls.identities", role, tls, identities_raw
                )
        return AgencySettings(
            name=name,
            bootstrap_servers=tuple(servers),
            tls=tls,
            identities=identities,
            signing_key=self.path(raw, where, "signing_key") if "signing_key" in raw else None,
            trust_store=self.path(raw, where, "trust_store") if "trust_store" in raw else None,
        )

    def identity(
        self, where: str, role: str, default: TlsSettings, table: Mapping[str, Any]
    ) -> TlsSettings:
        if not _IDENTITY.fullmatch(role):
            raise self._fail(
                f"[{where}.{role}]",
                "an identity's name is lowercase letters, digits, '.', '-' and '_', starting "
                "with a letter",
            )
        raw = self.table(table, where, role, required=True)
        here = f'{where}."{role}"'
        self.no_unknown(raw, here, {"ca_file", "cert_file", "key_file"})
        return TlsSettings(
            ca_file=self.path(raw, here, "ca_file") if "ca_file" in raw else default.ca_file,
            cert_file=self.path(raw, here, "cert_file"),
            key_file=self.path(raw, here, "key_file"),
        )


def render_toml(config: Config, *, header: str = "") -> str:
    """The TOML text of ``config``, with paths relative to the file's folder where they can be."""
    base = config.path.parent if config.path else None

    def rel(path: Path) -> str:
        if base is not None and path.is_relative_to(base):
            return str(path.relative_to(base))
        return str(path)

    def q(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [
        "",
        "[topics]",
        f"events = {q(config.topics.events)}",
        f"quarantine = {q(config.topics.quarantine)}",
        f"audit = {q(config.topics.audit)}",
    ]
    if config.policy_file is not None:
        lines += ["", "[policy]", f"file = {q(rel(config.policy_file))}"]
    for name, agency in config.agencies.items():
        servers = ", ".join(q(s) for s in agency.bootstrap_servers)
        lines += ["", f"[agencies.{name}]", f"bootstrap_servers = [{servers}]"]
        if agency.signing_key is not None:
            lines.append(f"signing_key = {q(rel(agency.signing_key))}")
        if agency.trust_store is not None:
            lines.append(f"trust_store = {q(rel(agency.trust_store))}")
        if agency.tls is not None:
            lines += [
                "",
                f"[agencies.{name}.tls]",
                f"ca_file = {q(rel(agency.tls.ca_file))}",
                f"cert_file = {q(rel(agency.tls.cert_file))}",
                f"key_file = {q(rel(agency.tls.key_file))}",
            ]
            for role, identity in agency.identities.items():
                lines += ["", f"[agencies.{name}.tls.identities.{q(role)}]"]
                if identity.ca_file != agency.tls.ca_file:
                    lines.append(f"ca_file = {q(rel(identity.ca_file))}")
                lines += [
                    f"cert_file = {q(rel(identity.cert_file))}",
                    f"key_file = {q(rel(identity.key_file))}",
                ]
    return "\n".join(lines) + "\n"
