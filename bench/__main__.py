"""Run the benchmarks and write the report: ``python -m bench [--quick] [--no-report] [NAME ...]``.

=========  ====================================  ==========================================
name       module (run it alone with ``-m``)     measures
=========  ====================================  ==========================================
core       ``bench.bench_core``                  seal/open_ per core against fastavro and
                                                 Ed25519 alone (no Kafka)
policy     ``bench.bench_policy``                release decisions per second (no Kafka)
limits     ``bench.bench_limits``                what a maximal hostile event costs to refuse
                                                 or accept (decode limits; no Kafka)
stages     ``bench.bench_stages``                each stage of the bridge's judge, per event
                                                 (no Kafka)
audit      ``bench.bench_audit``                 the audit chain per audit record (no Kafka)
correlate  ``bench.bench_correlate``             the correlator per event against ``open_``
                                                 alone, and its index's memory per million
                                                 identifiers (no Kafka)
pubsub     ``bench.bench_pubsub``                publisher/subscriber against raw aiokafka
                                                 clients
e2e        ``bench.bench_e2e``                   the bridge against MirrorMaker 2 and raw and
                                                 transactional pass-throughs: throughput by
                                                 event size, latency by offered rate, memory;
                                                 every contender timed from the first record
                                                 sent to the last committed (many minutes)
profile    ``bench.bench_bridge --profile-only``  cProfile of an in-process replicator: own
                                                 time by category, wall time per batch stage
scale      ``bench.bench_scale``                 one direction's bridge throughput against
                                                 partitions (1, 3, 6, 12) and worker processes
                                                 (1, 2, 3), each against 1 partition, 1 worker
mesh       ``bench.bench_mesh``                  five agencies, every direction bridged: memory
                                                 and CPU of the Kafka nodes and the bridges
link       ``bench.bench_link``                  the bridge and MirrorMaker 2 across a long
                                                 link (0, 25, 100 ms round trips), each
                                                 against its own 0 ms figure (root only;
                                                 skipped otherwise)
bridge     ``bench.bench_bridge``                the older bridge bench (its throughput is
                                                 timed from the first mirrored event); only
                                                 when named
=========  ====================================  ==========================================

By default every benchmark but ``bridge`` runs, then ``bench.report`` writes every figure as
JSON and the plots as PNG into ``bench/results/<UTC time>/`` (gitignored) and rewrites
``docs/performance.md``. ``--quick`` runs short versions (a few minutes in all). Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report

BENCHMARKS = {
    "core": "bench.bench_core",
    "policy": "bench.bench_policy",
    "limits": "bench.bench_limits",
    "stages": "bench.bench_stages",
    "audit": "bench.bench_audit",
    "correlate": "bench.bench_correlate",
    "pubsub": "bench.bench_pubsub",
    "e2e": "bench.bench_e2e",
    "profile": "bench.bench_bridge",
    "scale": "bench.bench_scale",
    "mesh": "bench.bench_mesh",
    "link": "bench.bench_link",
    "bridge": "bench.bench_bridge",
}
DEFAULT = (
    "core",
    "policy",
    "limits",
    "stages",
    "correlate",
    "profile",
    "pubsub",
    "e2e",
    "scale",
    "mesh",
    "link",
)
_ROOT = Path(__file__).resolve().parent.parent


def _arguments(name: str, quick: bool) -> list[str] | None:
    """The command line a module's ``main`` gets; None for modules whose ``main`` takes none."""
    if name in ("pubsub", "e2e", "bridge", "correlate", "link", "scale"):
        return ["--quick"] if quick else []
    if name == "mesh":
        return ["--seconds", "10", "--modes", "per-source"] if quick else []
    if name == "profile":
        return ["--profile-only", *(["--quick"] if quick else [])]
    if name == "stages":
        return ["--rounds", "3" if quick else "9"]
    return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="short runs (a few minutes)")
    parser.add_argument("--no-report", action="store_true", help="print only; write nothing")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    started = datetime.now(UTC)
    results: dict[str, Any] = {"started": started.isoformat(), "quick": args.quick}
    for name in args.names or DEFAULT:
        module_name = BENCHMARKS[name]
        if importlib.util.find_spec(module_name) is None:
            print(f"== {name}: {module_name} is not there, skipped")
            continue
        print(f"== {name}: python -m {module_name}", flush=True)
        module = importlib.import_module(module_name)
        arguments = _arguments(name, args.quick)
        if name == "core":
            figures = module.main(rounds=3 if args.quick else 7)
        else:
            figures = module.main() if arguments is None else module.main(arguments)
        if isinstance(figures, dict):
            results[name] = figures
        print(flush=True)
    if not args.no_report and any(
        k in results for k in ("stages", "profile", "pubsub", "e2e", "scale", "mesh", "link")
    ):
        out = _ROOT / "bench" / "results" / started.strftime("%Y%m%dT%H%M%SZ")
        report.write(results, out=out, doc=_ROOT / "docs" / "performance.md")
        print(f"report: {out.relative_to(_ROOT)}/ and docs/performance.md")


if __name__ == "__main__":
    main(sys.argv[1:])
