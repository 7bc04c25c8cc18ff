"""``bus.__all__``: the public API, pinned (STYLE rule 1)."""

from __future__ import annotations

import subprocess
import sys

import bus

EXPECTED = [
    # events
    "from_json",
    "template",
    "to_json",
    "validate",
    # schemas
    "SchemaStore",
    "default_store",
    # keys and trust
    "PublicKey",
    "SigningKey",
    "TrustStore",
    "TrustedKey",
    "generate_agency_key",
    # envelope
    "UnverifiedEvent",
    "VerifiedEvent",
    "open_",
    "peek",
    "seal",
    "seal_batch",
    "RootCache",
    # policy and audit
    "Decision",
    "Policy",
    "ReleaseRequest",
    "Rule",
    "load_policy",
    "SourcePosition",
    "audit_record",
    "decode_audit_record",
    "encode_audit_record",
    # records read back from the quarantine topic
    "QuarantinedRecord",
    "read_quarantined",
    # transport (imported on first use)
    "Published",
    "Publisher",
    "open_publisher",
    "Delivery",
    "Rejection",
    "Subscriber",
    "open_subscriber",
    "run_subscriber",
    "Quarantine",
    # configuration
    "AgencySettings",
    "Config",
    "TlsSettings",
    "TopicSettings",
    "load_config",
    # errors
    "BusError",
    "ConfigError",
    "PolicyError",
    "LocalClusterError",
    "TransportError",
    "PublishError",
    "EventError",
    "SchemaError",
    "QuarantineRecordError",
    "RecordRejected",
    "WireError",
    "TruncatedRecord",
    "OversizedRecord",
    "BadMarker",
    "UnknownFingerprint",
    "MalformedDatum",
    "LimitExceeded",
    "VerificationError",
    "BadSignature",
    "BadProof",
    "UnknownKey",
    "KeyAgencyMismatch",
    "KeyNotValid",
    "KeyRevoked",
    "EventFromFuture",
    "EventRejected",
]


def test_all_is_exactly_the_expected_public_api() -> None:
    assert sorted(bus.__all__) == sorted(EXPECTED)
    assert len(set(bus.__all__)) == len(bus.__all__)


def test_every_exported_name_exists_and_is_public() -> None:
    for name in bus.__all__:
        assert not name.startswith("_"), name
        member = getattr(bus, name)
        module = getattr(member, "__module__", "")
        assert module.startswith("bus."), f"{name} comes from {module}"
        assert not any(part.startswith("_") for part in module.split(".")), (
            f"{name} is defined in the private module {module}"
        )


def test_importing_bus_does_not_import_kafka_clients() -> None:
    """The pure core stays usable (and quick to import) without aiokafka or faust."""
    probe = (
        "import sys, bus; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'aiokafka', 'faust'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
