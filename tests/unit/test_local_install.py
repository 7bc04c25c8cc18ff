"""``bus.local._install`` without a broker: the Kafka version, Java, and the jar folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bus.errors import LocalClusterError
from bus.local._install import KAFKA_POM, ensure_jars, find_java, has_jars, kafka_version


def test_kafka_version_is_read_from_the_pom() -> None:
    version = kafka_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert f"<kafka.version>{version}</kafka.version>" in KAFKA_POM.read_text()


def test_kafka_version_of_a_pom_without_the_property_or_without_a_pom(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project></project>")
    with pytest.raises(LocalClusterError, match=r"no <kafka\.version> property"):
        kafka_version(pom)
    with pytest.raises(LocalClusterError, match="cannot read the Kafka POM"):
        kafka_version(tmp_path / "absent.xml")


def test_find_java_with_a_bogus_java_home_names_it(tmp_path: Path) -> None:
    with pytest.raises(LocalClusterError, match=r"JAVA_HOME is .*does not exist"):
        find_java(tmp_path / "no-such-jdk")


def _fake_java(home: Path, version_line: str) -> Path:
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return home


@pytest.mark.parametrize(
    ("line", "accepted"),
    [
        ('openjdk version "17.0.2" 2022-01-18', True),
        ('openjdk version "21" 2023-09-19', True),
        ('openjdk version "11.0.20" 2023-07-18', False),
        ('java version "1.8.0_381"', False),
    ],
)
def test_find_java_needs_17_or_newer(tmp_path: Path, line: str, accepted: bool) -> None:
    home = _fake_java(tmp_path, line)
    if accepted:
        assert find_java(home) == home / "bin" / "java"
    else:
        with pytest.raises(LocalClusterError, match="needs Java 17 or newer"):
            find_java(home)


def _jars(lib: Path, *names: str) -> Path:
    lib.mkdir(parents=True, exist_ok=True)
    for name in names:
        (lib / name).touch()
    return lib


COMPLETE = (
    "kafka_2.13-4.1.1.jar",
    "kafka-tools-4.1.1.jar",
    "connect-mirror-4.1.1.jar",
    "log4j-slf4j-impl-2.24.3.jar",
    "kafka-clients-4.1.1.jar",
)


def test_has_jars_needs_broker_tools_mirrormaker_and_logging(tmp_path: Path) -> None:
    assert not has_jars(tmp_path / "absent")
    assert not has_jars(_jars(tmp_path / "empty"))
    assert not has_jars(_jars(tmp_path / "partial", *COMPLETE[1:]))
    assert has_jars(_jars(tmp_path / "complete", *COMPLETE))


def test_ensure_jars_keeps_a_complete_folder_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _: pytest.fail("looked for Maven"))
    lib = _jars(tmp_path / "lib", *COMPLETE)
    assert ensure_jars(lib, log=pytest.fail) == lib


def test_ensure_jars_without_maven_names_maven_and_bus_kafka_jars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert shutil.which("mvn") is None
    with pytest.raises(LocalClusterError) as caught:
        ensure_jars(tmp_path / "lib", log=pytest.fail)
    assert "Maven" in str(caught.value)
    assert "BUS_KAFKA_JARS" in str(caught.value)
    assert not (tmp_path / "lib").exists()


def _fake_maven(bin_dir: Path, script: str) -> None:
    mvn = bin_dir / "mvn"
    bin_dir.mkdir(parents=True)
    mvn.write_text("#!/bin/sh\n" + script)
    mvn.chmod(0o755)


def test_fetching_the_jars_reports_the_files_maven_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for Maven: it reports two downloads and copies the jars where it is told.
    jars = " ".join(COMPLETE)
    _fake_maven(
        tmp_path / "bin",
        'echo "[INFO] Downloaded from central: https://repo/a.jar (1.5 MB at 3 MB/s)"\n'
        'echo "[INFO] Downloaded from central: https://repo/b.pom (500 kB at 1 MB/s)"\n'
        'for arg; do case "$arg" in -DoutputDirectory=*) out="${arg#*=}";; esac; done\n'
        f'for jar in {jars}; do touch "$out/$jar"; done\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.setattr("bus.local._install._REPORT_EVERY_S", 0.0)
    lines: list[str] = []
    lib = ensure_jars(tmp_path / "cache" / "lib", log=lines.append)
    assert has_jars(lib)
    assert any("fetching Kafka jars: 2 files downloaded (2.0 MB)" in line for line in lines)
    assert any(line.startswith("fetched 2 files (2.0 MB)") for line in lines)
    assert lines[-1] == f"Kafka jars: {len(COMPLETE)} jars in {lib}"


def test_a_failed_fetch_says_what_to_do_and_shows_what_maven_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_maven(tmp_path / "bin", 'echo "[ERROR] Could not transfer artifact"\nexit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    with pytest.raises(LocalClusterError) as caught:
        ensure_jars(tmp_path / "cache" / "lib", log=lambda _: None)
    message = str(caught.value)
    assert "exit 1" in message
    assert "bus local install" in message
    assert "Could not transfer artifact" in message
    assert not (tmp_path / "cache" / "lib").exists()
