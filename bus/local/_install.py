"""What a local Kafka node needs on this machine: a Java 17+ runtime and the Apache Kafka jars.

The jars come from Maven Central through ``deploy/kafka/pom.xml`` (``mvn
dependency:copy-dependencies``) into a cache folder named after the Kafka version, so two
versions never share a classpath folder.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bus.errors import LocalClusterError

__all__ = ["KAFKA_POM", "ensure_jars", "find_java", "kafka_version"]

# bus/local/_install.py -> the checkout's deploy/kafka/pom.xml
KAFKA_POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"

# A folder holds a usable distribution when it has the broker, the tools and MirrorMaker 2.
_REQUIRED_JARS = ("kafka_2.13-", "kafka-tools-", "connect-mirror-", "log4j-slf4j-impl-")


def kafka_version(pom: Path = KAFKA_POM) -> str:
    """The Kafka version that ``pom`` pins (its ``kafka.version`` property)."""
    try:
        text = pom.read_text(encoding="utf-8")
    except OSError as exc:
        raise LocalClusterError(
            f"{pom}: cannot read the Kafka POM ({exc.strerror}); run bus from a checkout of the "
            "project, which has deploy/kafka/pom.xml"
        ) from exc
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", text)
    if match is None:
        raise LocalClusterError(f"{pom}: no <kafka.version> property")
    return match.group(1)


def find_java(java_home: Path | None) -> Path:
    """The ``java`` executable (``$JAVA_HOME/bin/java``, else on PATH), checked to be 17+."""
    if java_home is not None:
        java = java_home / "bin" / "java"
        if not java.is_file():
            raise LocalClusterError(
                f"JAVA_HOME is {java_home}, but {java} does not exist; point JAVA_HOME at a "
                "Java 17+ runtime, or unset it to use the java on PATH"
            )
    else:
        found = shutil.which("java")
        if found is None:
            raise LocalClusterError(
                "Java not found: the local Kafka nodes need a Java 17+ runtime on PATH "
                "(on Debian: apt-get install openjdk-17-jre-headless), or set JAVA_HOME"
            )
        java = Path(found)
    try:
        probe = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalClusterError(f"{java} -version failed: {exc}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', probe.stderr + probe.stdout)
    if match is None:
        raise LocalClusterError(f"{java} -version printed no version; is it a Java runtime?")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < 17:
        raise LocalClusterError(
            f"{java} is Java {major}; Kafka 4 needs Java 17 or newer: install openjdk-17 or set "
            "JAVA_HOME"
        )
    return java


def has_jars(lib: Path) -> bool:
    """Whether ``lib`` holds a complete distribution (broker, tools, MirrorMaker 2, logging)."""
    if not lib.is_dir():
        return False
    names = [p.name for p in lib.glob("*.jar")]
    return all(any(n.startswith(prefix) for n in names) for prefix in _REQUIRED_JARS)


def ensure_jars(lib: Path, *, pom: Path = KAFKA_POM, log: Callable[[str], None]) -> Path:
    """Make sure ``lib`` holds the Kafka jars, fetching them with Maven when it does not."""
    if has_jars(lib):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalClusterError(
            f"the Kafka jars are not in {lib} and Maven is not installed to fetch them: "
            "install Maven (apt-get install maven), or set BUS_KAFKA_JARS to a folder of "
            "Kafka jars"
        )
    log(f"fetching Apache Kafka {kafka_version(pom)} jars with Maven into {lib} ...")
    lib.parent.mkdir(parents=True, exist_ok=True)
    # Fetch into a fresh folder and rename it into place: a half-done fetch never looks complete.
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=lib.parent))
    try:
        code, output = _run_maven(
            [
                mvn,
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
            ],
            log=log,
        )
        if code != 0 or not has_jars(staging):
            tail = "\n".join(line for line in output[-15:])
            raise LocalClusterError(
                f"Maven could not fetch the Kafka jars (exit {code}); check that Maven Central "
                "is reachable (or Maven's proxy settings in ~/.m2/settings.xml), then run "
                f"`bus local install` again. Maven said:\n{tail}"
            )
        if lib.exists():
            shutil.rmtree(lib)
        staging.rename(lib)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"Kafka jars: {sum(1 for _ in lib.glob('*.jar'))} jars in {lib}")
    return lib


_DOWNLOADED = re.compile(r"^\[INFO\] Downloaded from [^:]+: \S+ \((\d+(?:\.\d+)?) (B|kB|MB)")
_UNITS = {"B": 1, "kB": 1000, "MB": 1000**2}
_MAVEN_TIMEOUT_S = 1800.0
_REPORT_EVERY_S = 5.0


def _run_maven(command: list[str], *, log: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run Maven, reporting the files it downloaded every few seconds; (exit code, its lines)."""
    started = time.monotonic()
    lines: list[str] = []
    files = 0
    size = 0.0
    last_report = started
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        # Maven can hang on a dead network without a line of output: kill it at the timeout.
        timer = threading.Timer(_MAVEN_TIMEOUT_S, process.kill)
        timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line.rstrip())
                if match := _DOWNLOADED.match(line):
                    files += 1
                    size += float(match.group(1)) * _UNITS[match.group(2)]
                now = time.monotonic()
                if now - last_report >= _REPORT_EVERY_S:
                    last_report = now
                    log(
                        f"fetching Kafka jars: {files} files downloaded ({size / 1e6:.1f} MB), "
                        f"{now - started:.0f} s"
                    )
            code = process.wait()
        finally:
            timer.cancel()
            if process.poll() is None:
                process.kill()
    if files:
        log(f"fetched {files} files ({size / 1e6:.1f} MB) in {time.monotonic() - started:.0f} s")
    return code, lines
