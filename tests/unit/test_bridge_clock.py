"""The bridge judges keys by its own clock: ``judge`` and ``BridgeSettings``' clock settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bus.bridge import BridgeSettings
from bus.bridge._verdict import Outcome, judge
from bus.config import AgencySettings, TopicSettings
from bus.envelope import seal
from bus.errors import ConfigError
from bus.policy import parse_policy
from bus.signing import SigningKey
from bus.trust import DEFAULT_GRACE, DEFAULT_MAX_SKEW, TrustedKey, TrustStore
from tests.signed import make_event

KEY = SigningKey.generate()
CREATED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)  # make_event's created_at
END = CREATED + timedelta(hours=1)
TRUST = TrustStore(
    [
        TrustedKey(
            agency="interpol",
            public_key=KEY.public_key,
            not_before=CREATED - timedelta(days=30),
            not_after=END,
        )
    ]
)
POLICY = parse_policy({"agencies": ["interpol", "europol"]})


class _Record:
    topic = "intel.events"
    partition = 0
    offset = 7
    timestamp = 0
    key = None
    headers: tuple[tuple[str, bytes], ...] = ()

    def __init__(self, value: bytes) -> None:
        self.value = value


def _reason(now: datetime, **clock: timedelta) -> str | None:
    verdict = judge(
        _Record(seal(make_event("interpol"), KEY)),
        trust=TRUST,
        policy=POLICY,
        source="interpol",
        destination="europol",
        bridge_id="test",
        now=now,
        max_size=1 << 20,
        key_grace=clock.get("key_grace", DEFAULT_GRACE),
        max_clock_skew=clock.get("max_clock_skew", DEFAULT_MAX_SKEW),
    )
    if verdict.outcome is Outcome.QUARANTINE:
        assert verdict.error is not None
        return verdict.error.reason
    return None


def test_judge_uses_the_bridges_clock_for_keys_and_skew() -> None:
    assert _reason(END + timedelta(minutes=30)) is None  # within the default hour of grace
    assert _reason(END + timedelta(hours=2)) == "key-not-valid"
    assert _reason(END + timedelta(hours=2), key_grace=timedelta(hours=3)) is None
    assert _reason(CREATED - timedelta(minutes=10)) == "event-from-future"
    assert _reason(CREATED - timedelta(minutes=10), max_clock_skew=timedelta(minutes=15)) is None


def _settings(**options: float) -> BridgeSettings:
    agency = {name: AgencySettings(name=name, bootstrap_servers=("h:1",)) for name in ("a", "b")}
    return BridgeSettings(
        source=agency["a"],
        destination=agency["b"],
        topics=TopicSettings(),
        source_topics=("intel.events",),
        bridge_id="a->b@test",
        **options,  # type: ignore[arg-type]  # numeric knobs
    )


def test_bridge_settings_default_to_an_hour_of_grace_and_five_minutes_of_skew() -> None:
    settings = _settings()
    assert settings.key_grace == timedelta(hours=1)
    assert settings.max_clock_skew == timedelta(minutes=5)
    custom = _settings(key_grace_s=600, max_clock_skew_s=30)
    assert (custom.key_grace, custom.max_clock_skew) == (
        timedelta(minutes=10),
        timedelta(30 / 86400),
    )


@pytest.mark.parametrize("option", ["key_grace_s", "max_clock_skew_s"])
@pytest.mark.parametrize("seconds", [-1.0, 8 * 86400.0])
def test_bridge_settings_refuse_a_negative_or_huge_clock_setting(
    option: str, seconds: float
) -> None:
    with pytest.raises(ConfigError, match=option):
        _settings(**{option: seconds})
