"""Exchange Bus: signed, Avro-encoded intelligence events across agencies' Kafka clusters.

Layers, lowest first (a module imports only from layers below it):

1. ``errors``: the exception tree.
2. pure core, no Kafka: ``codec``, ``signing``, ``trust``, ``envelope``, ``events``, ``policy``.
3. ``config``: the federation's configuration file.
4. transport on aiokafka: publisher, subscriber, quarantine.
5. ``bridge``: the Faust worker that replicates released events between clusters.
6. ``local``: real Kafka nodes on this machine; ``cli``: the ``bus`` command.
"""

from bus.config import AgencySettings, Config, TlsSettings, TopicSettings, load_config
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

__all__ = [
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
