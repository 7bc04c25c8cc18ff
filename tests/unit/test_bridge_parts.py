"""The bridge's pure parts: judging a record, hop headers, checkpoints, settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.audit import decode_audit_record
from bus.bridge._checkpoint import Checkpoint, transactional_id
from bus.bridge._hops import HOP, PATH, forwarded_headers, path_of
from bus.bridge._verdict import Outcome, Verdict, judge
from bus.bridge.settings import BridgeSettings
from bus.config import AgencySettings, Config, TopicSettings
from bus.envelope import seal
from bus.errors import CheckpointError, ConfigError
from bus.policy import load_policy
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore
from tests.signed import make_event

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = load_policy(Path(__file__).parents[2] / "deploy" / "policy" / "local.toml")
INTERPOL = SigningKey.generate()
EUROPOL = SigningKey.generate()
TRUST = TrustStore(
    [
        TrustedKey(
            agency="interpol", public_key=INTERPOL.public_key, not_before=NOW - timedelta(days=400)
        ),
        TrustedKey(
            agency="europol", public_key=EUROPOL.public_key, not_before=NOW - timedelta(days=400)
        ),
    ]
)


@dataclass(frozen=True)
class Record:
    value: bytes | None
    topic: str = "intel.events"
    partition: int = 2
    offset: int = 41
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"case-1"
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)


def _judge(record: Record) -> Verdict:
    return judge(
        record,
        trust=TRUST,
        policy=POLICY,
        source="interpol",
        destination="europol",
        bridge_id="interpol->europol@test",
        now=NOW,
        max_size=1 << 20,
    )


def test_a_released_event_is_forwarded_and_audited_as_forwarded() -> None:
    event = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    verdict = _judge(Record(value=seal(event, INTERPOL)))
    assert verdict.outcome is Outcome.FORWARD
    assert verdict.audit_value is not None
    audit = decode_audit_record(verdict.audit_value)
    assert (audit["decision"], audit["rule"], audit["event_id"]) == (
        "FORWARDED",
        "allowed",
        event["event_id"],
    )
    assert (audit["source_partition"], audit["source_offset"]) == (2, 41)
    assert verdict.audit_key == event["event_id"].encode()


def test_an_event_not_releasable_is_denied_and_audited_with_the_rule() -> None:
    event = make_event("interpol", releasable_to=[], tlp="GREEN")
    verdict = _judge(Record(value=seal(event, INTERPOL)))
    assert verdict.outcome is Outcome.DENY
    assert verdict.decision is not None
    assert verdict.decision.rule == "releasable-to"
    assert verdict.audit_value is not None
    assert decode_audit_record(verdict.audit_value)["decision"] == "DENIED"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "truncated"),
        (b"", "truncated"),
        (b"not avro at all", "bad-marker"),
    ],
)
def test_bytes_that_are_not_an_event_are_quarantined(value: bytes | None, reason: str) -> None:
    verdict = _judge(Record(value=value))
    assert verdict.outcome is Outcome.QUARANTINE
    assert verdict.error is not None
    assert verdict.error.reason == reason
    assert verdict.audit_value is None


def test_origin_spoofing_is_quarantined_never_decided() -> None:
    """Europol's key signing an event that claims INTERPOL as its origin."""
    event = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    verdict = _judge(Record(value=seal(event, EUROPOL)))
    assert verdict.outcome is Outcome.QUARANTINE
    assert verdict.error is not None
    assert verdict.error.reason == "key-agency-mismatch"


def test_a_flipped_byte_is_quarantined() -> None:
    value = bytearray(seal(make_event("interpol", releasable_to=["europol"]), INTERPOL))
    value[len(value) // 2] ^= 0x01
    verdict = _judge(Record(value=bytes(value)))
    assert verdict.outcome is Outcome.QUARANTINE


def test_an_event_that_already_passed_the_destination_is_denied_by_the_hop_path() -> None:
    event = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    record = Record(value=seal(event, INTERPOL), headers=((PATH, b"europol,interpol"),))
    verdict = _judge(record)
    assert verdict.decision is not None
    assert verdict.decision.rule == "loop-path"


def test_forwarded_headers_keep_the_originals_and_extend_the_path() -> None:
    original = [("ce_id", b"x"), (PATH, b"ameripol")]
    headers = forwarded_headers(original, source="interpol", destination="europol", bridge_id="b1")
    assert headers[0] == ("ce_id", b"x")
    assert [v for k, v in headers if k == PATH] == [b"ameripol,interpol"]
    assert (HOP, b"interpol->europol b1") in headers
    assert path_of(headers) == ("ameripol", "interpol")


def test_a_record_without_a_path_gets_its_source_as_path() -> None:
    headers = forwarded_headers(None, source="interpol", destination="europol", bridge_id="b1")
    assert path_of(headers) == ("interpol",)
    assert path_of(None) == ()


def test_checkpoints_round_trip_and_refuse_garbage() -> None:
    checkpoint = Checkpoint(next_offset=17, bridge_id="b", written_at=NOW)
    assert Checkpoint.decode(checkpoint.encode(), where="t/0@3") == checkpoint
    with pytest.raises(CheckpointError, match="t/0@3"):
        Checkpoint.decode(b"{}", where="t/0@3")
    with pytest.raises(CheckpointError, match="negative"):
        Checkpoint.decode(
            b'{"next_offset":-1,"bridge_id":"b","written_at":"2026-01-01T00:00:00+00:00"}',
            where="x",
        )


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (b"secret-not-json", "not JSON"),
        (b'["secret"]', "not a JSON object"),
        (
            b'{"next_offset":"secret","bridge_id":"b","written_at":"2026-01-01T00:00:00Z"}',
            "next_offset",
        ),
        (b'{"next_offset":1,"bridge_id":"b","written_at":"secret"}', "written_at"),
        (b'{"next_offset":1,"written_at":"2026-01-01T00:00:00Z"}', "bridge_id missing"),
    ],
)
def test_a_bad_checkpoint_names_the_field_and_never_echoes_the_value(
    value: bytes, named: str
) -> None:
    with pytest.raises(CheckpointError, match=named) as info:
        Checkpoint.decode(value, where="t/0@3")
    assert "secret" not in str(info.value)


def test_each_partition_and_log_has_its_own_transactional_id() -> None:
    ids = {
        transactional_id("interpol", "europol", "intel.events", p, log)
        for p in range(3)
        for log in ("audit", "mirror")
    }
    assert len(ids) == 6


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
