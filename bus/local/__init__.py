"""The local federation: one real Apache Kafka cluster (KRaft) per agency.

Each agency's cluster is independent (its own cluster id, KRaft quorum, CA and data). By
default it is a single node, combined broker and controller on loopback ports: agency ``i``
(0-based, in the order given) listens on ``base_port + 2*i`` (clients) and
``base_port + 2*i + 1`` (its controller). With ``brokers=3`` (``bus local up --brokers 3``)
each cluster has three such nodes, the voters of one controller quorum, and every topic is
replicated three times with ``min.insync.replicas=2`` (the port plan: ``_supervision``; why:
docs/decisions/0016-replicated-clusters.md).

State lives under one home folder (``bus.config.default_home()``)::

    local.toml                 the federation's shape: agencies, ports, heap (for later commands)
    bus.toml                   the configuration every bus command reads (bus.config)
    keys/                      a signing key per agency and trust.toml, made on first start
    tls/<agency>/              the agency's CA, node and client certificates (mTLS; _tls)
    policy.toml                the release policy between the agencies
    nodes/<agency>/            server.properties, log4j2.properties, node.pid
    nodes/<agency>/data/       the KRaft metadata and topic logs (survive down/up)
    nodes/<agency>/logs/       server.log (the broker's log) and console.log (the JVM's output)
    nodes/<agency>-<id>/       the same for node <id> of a cluster of several nodes

Keys are valid from a day before they were made (``bus.keyring.BACKDATE``), so that events
written just before ``up`` still verify. Keys are never replaced; a later ``up`` with more
agencies adds keys for the new ones, and rewrites the policy only if nobody edited it.

By default every listener requires mutual TLS (a CA per agency, ``_tls``) and the
StandardAuthorizer allows only the ACLs of ``_acls`` (docs/security.md); ``insecure_plaintext``
(``bus local up --insecure-plaintext``) gives plaintext nodes for development only.

Starting waits for an admin call to succeed on every node, and every node to know all the
brokers of its cluster (never a sleep), then creates the bus topics. Stopping sends SIGTERM and
waits, so Kafka shuts down cleanly; nothing is left running.
A node is known only by the pid recorded in its ``node.pid``, checked against its command line,
so one checkout or test run never stops another's nodes.

The modules, each importing only those above it::

    _install        Java 17+ and the Kafka jars (through Maven)
    _provisioning   signing keys, trust store and the generated release policy
    _spec           the federation's shape: spec, nodes, local.toml
    _tls            the CA, node and client certificates of each agency
    _acls           what each principal may do on each cluster; creating the ACLs
    _node_files     a node's server.properties, log4j2.properties, JVM command, storage
    _processes      starting, finding, stopping a node's process
    _backoff        when to restart a process that exited (pure)
    _jmx            the JMX exporter agent of a node: its jar and its -javaagent argument
    _prometheus     Prometheus and Alertmanager beside the federation, file-based discovery
    _supervision    what is supervised (bridges, correlators, Prometheus, Alertmanager): the
                    port plan, files, commands, pid checks
    _targets        every process as a scrape target of Prometheus' file-based discovery
    _supervisor     the supervisor process (``bus local supervise``)
    _control        starting the supervisor, waiting until what it runs is ready, stopping it
    _federation     up, down, status, reset: topics and bus.toml
    _status         every process's status for ``bus local status``, table and JSON
    _wire, _link    a long link for tests and benchmarks: a node in a network namespace of
                    its own behind a wire with delay, jitter, loss and partitions (root only)

The bridges (one ``bus bridge run`` per source agency, hosting its directions to every other
agency: docs/decisions/0017-several-directions-per-worker.md), the correlators (one
``bus correlate run`` per agency), Prometheus and Alertmanager run under a supervisor
(``bus local supervise``) that restarts one that exits, with backoff, and counts it; ``up``
starts the clusters only (each node with the Prometheus JMX exporter agent) and
:func:`start_supervised` the supervisor (``bus local up`` does both, unless ``--no-bridges``,
``--no-correlators`` and ``--no-prometheus``); ``down`` stops the supervisor first (the bridges
and correlators, then Prometheus and Alertmanager), then the nodes. Every process is a scrape
target of Prometheus' file-based discovery (``_targets.register_targets``). Layout, ports
and files: ``_supervision``; the design: docs/decisions/0011-local-supervision.md and
0012-local-prometheus.md.
"""

from __future__ import annotations

from bus.local._acls import (
    Acl,
    apply_acls,
    bridge_acls,
    cluster_acls,
    correlator_acls,
    kafka_acls_commands,
)
from bus.local._control import start_bridges, start_supervised
from bus.local._control import stop_supervised as stop_bridges
from bus.local._federation import (
    admin_settings,
    cluster_admin,
    down,
    iter_node_pids,
    reset,
    status,
    up,
)
from bus.local._link import Link, LinkConditions, long_link
from bus.local._link import unavailable as link_unavailable
from bus.local._spec import (
    DEFAULT_AGENCIES,
    MAX_BROKERS,
    FederationSpec,
    Node,
    NodeStatus,
    load_spec,
)
from bus.local._status import ProcessStatus, render_table
from bus.local._status import collect as process_status
from bus.local._supervision import (
    SupervisedBridge,
    SupervisedCorrelator,
    bridges,
    correlators,
    log_files,
    port_count,
    service_urls,
)

__all__ = [
    "Acl",
    "admin_settings",
    "cluster_admin",
    "apply_acls",
    "bridge_acls",
    "correlator_acls",
    "cluster_acls",
    "kafka_acls_commands",
    "DEFAULT_AGENCIES",
    "MAX_BROKERS",
    "FederationSpec",
    "Node",
    "NodeStatus",
    "load_spec",
    "up",
    "down",
    "status",
    "reset",
    "iter_node_pids",
    "start_bridges",
    "start_supervised",
    "port_count",
    "service_urls",
    "stop_bridges",
    "SupervisedBridge",
    "SupervisedCorrelator",
    "bridges",
    "correlators",
    "log_files",
    "ProcessStatus",
    "process_status",
    "render_table",
    "Link",
    "LinkConditions",
    "long_link",
    "link_unavailable",
]
