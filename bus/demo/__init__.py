"""The demo: realistic traffic across a running federation, watched live through the bridges.

``bus demo`` (``make demo``) runs it on the local federation that ``bus local up`` started:

- ``_traffic``  the events (five areas, TLP, handling codes, releasability, onward consent,
                identifiers shared between agencies) and the forged or tampered records; pure,
                so the correlator and the chaos tests can draw from it too;
- ``_bridges``  one direction's counts read from a bridge's ``/metrics``, and their growth;
- ``_hits``     each agency's correlation hits read from ``bus.correlations``, and whether its
                correlator runs;
- ``_run``      publishing at every agency, watching the bridges and the hits, settling, the
                summary;
- ``_view``     the ``rich`` tables of a summary.

The demo starts no process: it publishes, writes forgeries raw, reads ``/metrics`` and reads
``bus.correlations`` (a correlator is started apart: ``bus correlate run``).
"""

from __future__ import annotations

from bus.demo._bridges import BridgeCounts, BridgeUnreachable, parse_metrics, quantile
from bus.demo._hits import Correlations, HitLine, hit_line
from bus.demo._run import Direction, DirectionSummary, Summary, run_demo
from bus.demo._traffic import AREAS, FORGERY_KINDS, SHARED_IDENTIFIERS, Forgery, Traffic
from bus.demo._view import progress_line, render, render_hits, view

__all__ = [
    "AREAS",
    "FORGERY_KINDS",
    "SHARED_IDENTIFIERS",
    "BridgeCounts",
    "BridgeUnreachable",
    "Correlations",
    "Direction",
    "DirectionSummary",
    "Forgery",
    "HitLine",
    "Summary",
    "Traffic",
    "hit_line",
    "parse_metrics",
    "progress_line",
    "quantile",
    "render",
    "render_hits",
    "run_demo",
    "view",
]
