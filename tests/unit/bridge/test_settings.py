"""Bridge settings: what a direction refuses, and the names it derives."""

from __future__ import annotations

import pytest

from bus.bridge.settings import BridgeSettings
from bus.config import AgencySettings, Config, TopicSettings
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


def test_the_backoff_doubles_up_to_its_maximum() -> None:
    settings = BridgeSettings.from_config(
        _config(), source="interpol", destination="europol", retry_backoff_s=0.5, max_backoff_s=3
    )
    assert [settings.backoff_s(attempt) for attempt in (1, 2, 3, 40)] == [1.0, 2.0, 3.0, 3.0]
