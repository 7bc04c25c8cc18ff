"""Run the benchmarks: ``python -m bench [--quick] [NAME ...]`` (all of them by default).

=========  ====================================  ==========================================
name       module (run it alone with ``-m``)     measures
=========  ====================================  ==========================================
core       ``bench.bench_core``                  seal/open_ per core against fastavro and
                                                 Ed25519 alone (no Kafka)
policy     ``bench.bench_policy``                release decisions per second (no Kafka)
limits     ``bench.bench_limits``                what a maximal hostile event costs to refuse
                                                 or accept (decode limits; no Kafka)
audit      ``bench.bench_audit``                 the audit chain per audit record (no Kafka)
pubsub     ``bench.bench_pubsub``                publisher/subscriber against raw aiokafka
                                                 clients (when present)
bridge     ``bench.bench_bridge [--quick]``      bridge throughput, latency and profile
                                                 against a raw pass-through and MirrorMaker
                                                 2 on a fresh local federation (minutes)
=========  ====================================  ==========================================

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

BENCHMARKS = {
    "core": "bench.bench_core",
    "policy": "bench.bench_policy",
    "limits": "bench.bench_limits",
    "audit": "bench.bench_audit",
    "pubsub": "bench.bench_pubsub",
    "bridge": "bench.bench_bridge",
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="short bridge run")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    for name in args.names or list(BENCHMARKS):
        module_name = BENCHMARKS[name]
        if importlib.util.find_spec(module_name) is None:
            print(f"== {name}: {module_name} is not there, skipped")
            continue
        print(f"== {name}: python -m {module_name}", flush=True)
        module = importlib.import_module(module_name)
        if name == "bridge":
            module.main(["--quick"] if args.quick else [])
        else:
            module.main()
        print(flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
