"""The pure core loads no Kafka client at run time either (import-linter checks the imports).

``lint-imports`` (``make check``) holds the contracts of ``pyproject.toml`` on the import
statements. Importing a module also runs its parent packages' ``__init__``, which those
statements do not show: ``bus.bridge._verdict`` once loaded aiokafka through
``bus/bridge/__init__.py``. This test imports the contract's modules in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _contract(contract_id: str) -> dict[str, Any]:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    [contract] = [c for c in contracts if c["id"] == contract_id]
    return contract


def test_importing_the_pure_core_loads_no_kafka_client() -> None:
    contract = _contract("pure-core")
    modules, forbidden = contract["source_modules"], contract["forbidden_modules"]
    assert "bus.bridge._verdict" in modules
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({forbidden!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
