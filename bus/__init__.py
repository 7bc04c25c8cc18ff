"""Exchange Bus: signed, Avro-encoded intelligence events across agencies' Kafka clusters.

Layers, lowest first (a module imports only from layers below it; the import-linter contracts
in ``pyproject.toml`` hold the code to this, and ``make check`` runs them):

1. ``errors``: the exception tree.
2. pure core, no Kafka: ``codec``, ``signing``, ``trust``, ``merkle``, ``batch``,
   ``envelope``, ``events``, ``policy``, ``audit``, ``headers``, ``records``; ``config``, the
   federation's settings.
3. transport on aiokafka: ``_kafka`` (client options, error translation), ``metrics``,
   ``publisher``, ``subscriber``, ``verifier`` (how a record is judged), ``quarantine``; on
   top, ``streams`` (the gate of users' own aiokafka consumers) and ``faust_streams``
   (verified events in users' Faust agents); beside it ``_worker``, the Faust worker
   scaffolding of the bridge and the correlator (web server, ``/metrics``, ``/healthz``).
4. ``bridge``: the Faust worker that replicates released events between clusters.
5. ``local``: real Kafka nodes on this machine; ``cli``: the ``bus`` command.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Importing ``bus`` loads the pure core (fastavro, cryptography, PyNaCl) but never aiokafka or
# faust: the transport layers re-exported here import them lazily or not at all.
from bus.audit import SourcePosition, audit_record, decode_audit_record, encode_audit_record
from bus.batch import RootCache
from bus.codec import SchemaStore, default_store
from bus.config import AgencySettings, Config, TlsSettings, TopicSettings, load_config
from bus.envelope import UnverifiedEvent, VerifiedEvent, open_, peek, seal, seal_batch
from bus.errors import (
    BadMarker,
    BadProof,
    BadSignature,
    BusError,
    ConfigError,
    EventError,
    EventFromFuture,
    EventRejected,
    KeyAgencyMismatch,
    KeyNotValid,
    KeyRevoked,
    LimitExceeded,
    LocalClusterError,
    MalformedDatum,
    OversizedRecord,
    PolicyError,
    PublishError,
    QuarantineRecordError,
    RecordRejected,
    SchemaError,
    TransportError,
    TruncatedRecord,
    UnknownFingerprint,
    UnknownKey,
    VerificationError,
    WireError,
)
from bus.events import from_json, template, to_json, validate
from bus.keyring import generate_agency_key
from bus.policy import Decision, Policy, ReleaseRequest, Rule, load_policy
from bus.records import QuarantinedRecord, read_quarantined
from bus.signing import PublicKey, SigningKey
from bus.trust import TrustedKey, TrustStore

# transport: imported on first use (module ``__getattr__``), so ``import bus`` stays Kafka-free.
_TRANSPORT = {
    "Published": "bus.publisher",
    "Publisher": "bus.publisher",
    "open_publisher": "bus.publisher",
    "Delivery": "bus.subscriber",
    "Rejection": "bus.subscriber",
    "Subscriber": "bus.subscriber",
    "open_subscriber": "bus.subscriber",
    "run_subscriber": "bus.subscriber",
    "Quarantine": "bus.quarantine",
}

if TYPE_CHECKING:
    from bus.publisher import Published, Publisher, open_publisher
    from bus.quarantine import Quarantine
    from bus.subscriber import Delivery, Rejection, Subscriber, open_subscriber, run_subscriber


def __getattr__(name: str) -> Any:
    module = _TRANSPORT.get(name)
    if module is None:
        raise AttributeError(f"module 'bus' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    # events: JSON form, templates, validation
    "from_json",
    "template",
    "to_json",
    "validate",
    # schemas and the single-object codec
    "SchemaStore",
    "default_store",
    # keys and trust
    "PublicKey",
    "SigningKey",
    "TrustStore",
    "TrustedKey",
    "generate_agency_key",
    # the signed envelope: the Kafka value
    "UnverifiedEvent",
    "VerifiedEvent",
    "open_",
    "peek",
    "seal",
    "seal_batch",
    "RootCache",
    # release policy and the audit trail
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
    # transport (publisher, subscriber, quarantine): imported on first use
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
