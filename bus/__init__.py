"""Exchange Bus: signed, Avro-encoded intelligence events across agencies' Kafka clusters.

Layers, lowest first (a module imports only from layers below it):

1. ``errors``: the exception tree.
2. pure core, no Kafka: ``codec``, ``signing``, ``trust``, ``envelope``, ``events``, ``policy``.
3. ``config``: the federation's configuration file.
4. transport on aiokafka: publisher, subscriber, quarantine.
5. ``bridge``: the Faust worker that replicates released events between clusters.
6. ``local``: real Kafka nodes on this machine; ``cli``: the ``bus`` command.
"""

# Importing ``bus`` loads the pure core (fastavro, cryptography, PyNaCl) but never aiokafka or
# faust: the transport layers re-exported here import them lazily or not at all.
from bus.audit import SourcePosition, audit_record, decode_audit_record, encode_audit_record
from bus.codec import SchemaStore, default_store
from bus.config import AgencySettings, Config, TlsSettings, TopicSettings, load_config
from bus.envelope import UnverifiedEvent, VerifiedEvent, open_, peek, seal
from bus.errors import (
    BadMarker,
    BadSignature,
    BusError,
    ConfigError,
    EventError,
    EventRejected,
    KeyAgencyMismatch,
    KeyNotValid,
    KeyRevoked,
    LocalClusterError,
    MalformedDatum,
    OversizedRecord,
    PolicyError,
    PublishError,
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
from bus.signing import PublicKey, SigningKey
from bus.trust import TrustedKey, TrustStore

# transport: ``bus.publisher`` and ``bus.subscriber`` are re-exported here once they are done.

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
    # transport (publisher, subscriber): added here when they are done
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
    "RecordRejected",
    "WireError",
    "TruncatedRecord",
    "OversizedRecord",
    "BadMarker",
    "UnknownFingerprint",
    "MalformedDatum",
    "VerificationError",
    "BadSignature",
    "UnknownKey",
    "KeyAgencyMismatch",
    "KeyNotValid",
    "KeyRevoked",
    "EventRejected",
]
