"""A ``bus`` worker (``bus bridge run``, ``bus correlate run``) in a process of its own, for
integration tests: start it, read its ``/healthz`` and ``/metrics``, wait until it is ready,
tail its log, stop it (SIGTERM) or kill it (SIGKILL)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bus.testing import Federated, free_base_port

__all__ = ["WorkerProcess", "stop_all"]


class WorkerProcess(abc.ABC):
    """One ``bus`` worker in a process of its own (killable with SIGKILL), on a free web port.

    Subclasses give its :meth:`arguments`: the ``bus`` command line after ``python -m bus``,
    with ``--web-port`` :attr:`port`. Each start logs to ``<log_dir>/<name>.<start>.log``.
    """

    def __init__(self, federated: Federated, *, log_dir: Path, name: str) -> None:
        self.federated = federated
        self.log_dir = log_dir
        self.name = name
        self.port = free_base_port(1)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @abc.abstractmethod
    def arguments(self) -> list[str]:
        """The worker's ``bus`` command line for this start (:attr:`starts` counts them)."""

    @property
    def log_file(self) -> Path:
        """The output of the latest start."""
        return self.log_dir / f"{self.name}.{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        command = [sys.executable, "-m", "bus", *self.arguments()]
        with self.log_file.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )

    async def health(self) -> dict[str, Any] | None:
        """The worker's /healthz answer; None while it does not answer."""
        return await asyncio.to_thread(self._health)

    def _health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                body: dict[str, Any] = json.load(r)
                return body
        except urllib.error.HTTPError as exc:  # 503: answered, but not healthy
            unhealthy: dict[str, Any] = json.load(exc)
            return unhealthy
        except (OSError, ValueError):
            return None

    async def wait_health(
        self, ready: Callable[[dict[str, Any]], object], *, what: str, timeout_s: float
    ) -> dict[str, Any]:
        """Wait until the worker's /healthz answer is ``ready``; that answer. AssertionError
        with the tail of its log if it exits first, or if ``timeout_s`` passes ("never
        ``what``")."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}: {self.tail()}"
                )
            status = await self.health()
            if status and ready(status):
                return status
            await asyncio.sleep(0.3)
        raise AssertionError(f"{self.name} never {what}: {self.tail()}")

    async def metrics(self) -> str:
        """The worker's /metrics page."""
        return await asyncio.to_thread(self._metrics)

    def _metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text: str = r.read().decode()
            return text

    async def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in (await self.metrics()).splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    async def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait (off the event loop); the exit status."""
        return await asyncio.to_thread(self.stop, timeout_s)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; the exit status (SIGKILL if it did not exit in ``timeout_s``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
            raise

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""


def stop_all(workers: Sequence[WorkerProcess], timeout_s: float = 5.0) -> None:
    """SIGTERM to every running worker at once, then SIGKILL to any still running after
    ``timeout_s``: a clean exit where possible, so that children measured by coverage write
    their data. (After earlier tests' bridges were killed, a bridge may take longer than that
    to stop; a test that needs a clean stop uses :meth:`WorkerProcess.terminate`.)"""
    running = [w.process for w in workers if w.process is not None and w.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
