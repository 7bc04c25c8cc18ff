"""Bridge settings: what a direction refuses, and the names it derives."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.bridge.settings import BridgeSettings
from bus.config import AgencySettings, Config, TlsSettings, TopicSettings
from bus.errors import ConfigError


def _config() -> Config:
    agencies = {
        name: AgencySettings(name=name, bootstrap_servers=(f"127.0.0.1:{port}",))
        for name, port in (("interpol", 1), ("europol", 2))
    }
    return Config(path=None, agencies=agencies, topics=TopicSettings())


def test_a_bridge_never_consumes_a_mirrored_topic() -> None:
    with pytest.raises(ConfigError, match="never consumes a mirror"):
        BridgeSettings.from_config(
            _config(), source="europol", destination="interpol", topics=("interpol.intel.events",)
        )


def test_a_bridge_refuses_the_bus_topics_and_itself() -> None:
    with pytest.raises(ConfigError, match="not a feed"):
        BridgeSettings.from_config(
            _config(), source="interpol", destination="europol", topics=("bus.audit",)
        )
    with pytest.raises(ConfigError, match="same agency"):
        BridgeSettings.from_config(_config(), source="interpol", destination="interpol")


def test_bridge_settings_name_the_group_and_the_mirror() -> None:
    settings = BridgeSettings.from_config(_config(), source="interpol", destination="europol")
    assert settings.group_id == "bus-bridge.interpol.europol"
    assert settings.mirror_topic("intel.events") == "interpol.intel.events"
    assert settings.source_topics == ("intel.events",)
    assert settings.worker_app_id == "bus-bridge.interpol.europol.worker"


def _tls(name: str) -> TlsSettings:
    return TlsSettings(ca_file=Path("ca.pem"), cert_file=Path(name), key_file=Path(f"{name}.key"))


def test_over_tls_a_bridge_uses_its_own_identity_on_both_clusters() -> None:
    agencies = {
        name: AgencySettings(
            name=name,
            bootstrap_servers=("127.0.0.1:1",),
            tls=_tls(f"{name}-app"),
            identities={
                "bridge.interpol.europol": _tls(f"{name}-bridge-ie"),
                "bridge.europol.interpol": _tls(f"{name}-bridge-ei"),
            },
        )
        for name in ("interpol", "europol")
    }
    config = Config(path=None, agencies=agencies)
    settings = BridgeSettings.from_config(config, source="interpol", destination="europol")
    assert settings.source.tls == _tls("interpol-bridge-ie")
    assert settings.destination.tls == _tls("europol-bridge-ie")


def test_over_tls_a_bridge_without_its_identity_is_refused() -> None:
    agencies = {
        name: AgencySettings(name=name, bootstrap_servers=("127.0.0.1:1",), tls=_tls("app"))
        for name in ("interpol", "europol")
    }
    with pytest.raises(ConfigError, match=r"bridge\.interpol\.europol"):
        BridgeSettings.from_config(
            Config(path=None, agencies=agencies), source="interpol", destination="europol"
        )


def test_the_backoff_doubles_up_to_its_maximum() -> None:
    settings = BridgeSettings.from_config(
        _config(), source="interpol", destination="europol", retry_backoff_s=0.5, max_backoff_s=3
    )
    assert [settings.backoff_s(attempt) for attempt in (1, 2, 3, 40)] == [1.0, 2.0, 3.0, 3.0]
