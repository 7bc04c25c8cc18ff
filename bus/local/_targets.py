"""Every process of the local federation as a scrape target of Prometheus' file-based
discovery (``_prometheus.write_targets``)."""

from __future__ import annotations

from bus.local import _prometheus
from bus.local._spec import HOST, FederationSpec
from bus.local._supervision import (
    alertmanager_port,
    bridges,
    correlators,
    jmx_ports,
    prometheus_port,
    supervisor_port,
)

__all__ = ["kafka_targets", "register_targets"]


def register_targets(
    spec: FederationSpec,
    *,
    with_bridges: bool = True,
    with_correlators: bool = True,
    with_prometheus: bool = True,
) -> None:
    """Write every process's scrape target for Prometheus' file-based discovery.

    Jobs: ``kafka`` (each node's JMX exporter, :func:`kafka_targets`), ``bridges`` (one target
    per worker, label ``worker``: ``bridge.<source>``; its metrics carry each direction's
    ``source`` and ``destination``), ``correlators`` (label ``worker``:
    ``correlator.<agency>``; its metrics carry ``agency``), ``supervisor``, ``prometheus``,
    ``alertmanager``. What is off gets an empty list, so that a Prometheus never waits for a
    process that was not started.
    """
    home = spec.home

    def target(port: int, **labels: str) -> _prometheus.Target:
        return _prometheus.Target(address=f"{HOST}:{port}", labels=labels)

    jobs: dict[str, list[_prometheus.Target]] = {
        "kafka": kafka_targets(spec),
        "bridges": [target(b.web_port, worker=b.name) for b in bridges(spec)]
        if with_bridges
        else [],
        "correlators": [target(c.web_port, worker=c.name) for c in correlators(spec)]
        if with_correlators
        else [],
        "supervisor": [target(supervisor_port(spec))],
        "prometheus": [target(prometheus_port(spec))] if with_prometheus else [],
        "alertmanager": [target(alertmanager_port(spec))] if with_prometheus else [],
    }
    for job, targets in jobs.items():
        _prometheus.write_targets(home, job, targets)


def kafka_targets(spec: FederationSpec) -> list[_prometheus.Target]:
    """Each node's JMX exporter as a scrape target, labelled with its ``agency`` (and with its
    ``node``, ``<agency>-<id>``, when the clusters have several nodes)."""
    ports = jmx_ports(spec)
    return [
        _prometheus.Target(
            address=f"{node.host}:{ports[node.name]}",
            labels={"agency": node.agency} | ({"node": node.name} if node.brokers > 1 else {}),
        )
        for node in spec.nodes()
    ]
