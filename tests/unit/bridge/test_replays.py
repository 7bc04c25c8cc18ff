"""Replays at the bridge, after the policy: a replay and a rollback are denied with their rule,
a revision conflict is quarantined, a record read again meets its own entry and keeps its verdict,
and what is forwarded is written beside the mirrored records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bus._revisions import RevisionIndex
from bus.audit import decode_audit_record
from bus.bridge._outgoing import destination_log_records
from bus.bridge._replays import entry_record, forwarded_topic, read_entry, screen
from bus.bridge._verdict import Outcome, Verdict, judge
from bus.envelope import seal
from bus.errors import CheckpointError, RevisionConflict
from bus.policy import load_policy
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore
from tests.signed import make_event
from tests.unit.bridge.fakes import Record, bridge_settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = load_policy(Path(__file__).parents[3] / "deploy" / "policy" / "local.toml")
KEY = SigningKey.generate()
TRUST = TrustStore(
    [TrustedKey(agency="interpol", public_key=KEY.public_key, not_before=NOW - timedelta(days=9))]
)


def event(**fields: Any) -> dict[str, Any]:
    base = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    base["created_at"] = NOW - timedelta(minutes=1)
    base["expires_at"] = NOW + timedelta(days=1)
    return {**base, **fields}


def judged(e: dict[str, Any], offset: int, partition: int = 2) -> Verdict:
    return judge(
        Record(value=seal(e, KEY), offset=offset, partition=partition),
        trust=TRUST,
        policy=POLICY,
        source="interpol",
        destination="europol",
        bridge_id="b1",
        now=NOW,
        max_size=1 << 20,
    )


def screened(verdicts: list[Verdict], index: RevisionIndex) -> list[Verdict]:
    return screen(verdicts, index=index, destination="europol", now=NOW)


def fresh() -> RevisionIndex:
    return RevisionIndex(capacity=100, window_s=3600)


def rules(verdicts: list[Verdict]) -> list[str]:
    out = []
    for v in verdicts:
        if v.outcome is Outcome.QUARANTINE:
            assert v.error is not None
            out.append(f"quarantine:{v.error.reason}")
        else:
            assert v.decision is not None
            assert v.audit_value is not None
            audit = decode_audit_record(v.audit_value)
            assert audit["rule"] == str(v.decision.rule)
            assert audit["decision"] == ("FORWARDED" if v.outcome is Outcome.FORWARD else "DENIED")
            out.append(f"{v.outcome.value}:{v.decision.rule}")
    return out


def test_one_copy_of_each_revision_crosses_replays_rollbacks_and_conflicts_do_not() -> None:
    first = event(revision=2)
    conflicting = {**first, "title": "another body under the same id and revision"}
    older = {**first, "revision": 1}
    newer = {**first, "revision": 3}
    batch = [
        judged(first, 10),
        judged(first, 11),  # replay, same batch
        judged(older, 12),
        judged(conflicting, 13),
        judged(newer, 14),
        judged(first, 15),  # now older than 3: a rollback
    ]
    assert [v.outcome for v in batch] == [Outcome.FORWARD] * 6  # the policy allows each
    index = fresh()
    assert rules(screened(batch, index)) == [
        "forward:allowed",
        "deny:replay",
        "deny:rollback",
        "quarantine:revision-conflict",
        "forward:allowed",
        "deny:rollback",
    ]
    # Another batch later, on another partition: still known.
    assert rules(
        screened([judged(first, 3, partition=0), judged(newer, 4, partition=0)], index)
    ) == [
        "deny:rollback",
        "deny:replay",
    ]


def test_the_reasons_say_what_was_forwarded_from_where_and_the_conflict_names_no_content() -> None:
    first = event()
    index = fresh()
    out = screened(
        [judged(first, 10), judged(first, 11), judged({**first, "title": "secret words"}, 12)],
        index,
    )
    assert out[1].decision is not None
    assert "intel.events/2@10" in out[1].decision.reason
    error = out[2].error
    assert isinstance(error, RevisionConflict)
    assert "intel.events/2@12" in str(error)
    assert "secret" not in str(error)
    assert out[2].decision is None


def test_a_record_read_again_meets_its_own_entry_and_stays_forwarded() -> None:
    """After a commit that did not land, or a crash between the two commits, the same record is
    judged again: it is forwarded (or audited as forwarded), not taken for a replay of itself."""
    first = event()
    index = fresh()
    assert rules(screened([judged(first, 10)], index)) == ["forward:allowed"]
    assert rules(screened([judged(first, 10), judged(first, 11)], index)) == [
        "forward:allowed",
        "deny:replay",
    ]


def test_an_event_the_policy_denies_keeps_the_policys_rule_but_a_conflict_is_quarantined() -> None:
    first = event()
    index = fresh()
    screened([judged(first, 10)], index)
    red = {**first, "tlp": "RED"}  # other bytes under the same id and revision
    unreleasable = {**event(), "releasable_to": []}
    out = screened([judged(red, 11), judged(unreleasable, 12), judged(unreleasable, 13)], index)
    assert rules(out) == [
        "quarantine:revision-conflict",
        "deny:releasable-to",
        "deny:releasable-to",
    ]


def test_an_expired_entry_is_forgotten_and_the_policy_denies_the_replay() -> None:
    first = event(expires_at=NOW + timedelta(seconds=30))
    index = fresh()
    screened([judged(first, 10)], index)
    later = NOW + timedelta(minutes=1)
    replay = judge(
        Record(value=seal(first, KEY), offset=11),
        trust=TRUST,
        policy=POLICY,
        source="interpol",
        destination="europol",
        bridge_id="b1",
        now=later,
        max_size=1 << 20,
    )
    out = screen([replay], index=index, destination="europol", now=later)
    assert rules(out) == ["deny:expired"]
    assert len(index) == 0


def test_the_mirror_transaction_holds_an_entry_per_forwarded_event_above_the_checkpoint() -> None:
    first, second = event(), event()
    index = fresh()
    verdicts = screened(
        [judged(first, 9), judged(first, 10), judged(second, 11), judged(event(tlp="RED"), 12)],
        index,
    )
    records = destination_log_records(
        verdicts, next_offset=10, settings=bridge_settings(), topic="intel.events", partition=2
    )
    state = forwarded_topic("interpol", "intel.events")
    assert state == "bus.checkpoints.forwarded.interpol.intel.events"
    mirrored = [r for r in records if r.topic == "interpol.intel.events"]
    entries = [r for r in records if r.topic == state]
    assert len(mirrored) == 1  # offset 9 is below the checkpoint, 10 a replay, 12 denied
    assert [r.key for r in entries] == [second["event_id"].encode()]
    assert {r.partition for r in records} == {2}
    assert entries[0].value is not None
    _, entry = read_entry(entries[0].key, entries[0].value, timestamp_ms=5_000, now=0, where="w")
    assert entry.position == ("intel.events", 2, 11)
    assert entry.revision == second["revision"]
    assert entry.seen_at == 5.0


def test_an_entry_reads_back_as_written() -> None:
    v = judged(event(revision=4), 10)
    assert v.identity is not None
    key, value = entry_record(v.identity, ("intel.events", 2, 10))
    event_id, entry = read_entry(key, value, timestamp_ms=-1, now=42.0, where="w")
    assert event_id == v.identity.event_id
    assert (entry.revision, entry.digest, entry.expires_at) == (
        4,
        v.identity.digest,
        v.identity.expires_at,
    )
    assert (entry.position, entry.seen_at) == (("intel.events", 2, 10), 42.0)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        (b"e1", b"not json", "not JSON"),
        (b"", b"{}", "no key"),
        (b"e1", b"[1]", "not an object"),
        (b"e1", b'{"revision": 1}', "missing"),
        (
            b"e1",
            b'{"revision":0,"sha256":"' + b"00" * 32 + b'","expires_at":null,'
            b'"source":{"topic":"t","partition":0,"offset":1}}',
            "malformed",
        ),
        (
            b"e1",
            b'{"revision":1,"sha256":"abcd","expires_at":null,'
            b'"source":{"topic":"t","partition":0,"offset":1}}',
            "malformed",
        ),
        (b"x" * 101, b"{}", "no key"),
    ],
)
def test_a_record_that_is_not_an_entry_is_a_checkpoint_error_naming_where(
    key: bytes, value: bytes, field: str
) -> None:
    with pytest.raises(CheckpointError, match=field) as caught:
        read_entry(key, value, timestamp_ms=0, now=0, where="bus.checkpoints.forwarded.x/0@7")
    assert "@7" in str(caught.value)
