"""Finding ``promtool`` (Debian's ``prometheus`` package, installed by ``make prometheus``)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DEPLOY", "promtool"]

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    """Run ``promtool ARGS``; its output, or an AssertionError with what it said."""
    found = shutil.which("promtool")
    assert found is not None, "promtool is not installed: run `make prometheus` (apt-get)"
    command: Sequence[str] = [found, *args]
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output}"
    return output
