"""``bus.config``: the configuration file; every error names the file and the key at fault."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bus.config import (
    AgencySettings,
    Config,
    TlsSettings,
    TopicSettings,
    default_config_path,
    default_home,
    default_jar_cache,
    load_config,
    render_toml,
)
from bus.errors import ConfigError

AGENCY = '[agencies.interpol]\nbootstrap_servers = ["127.0.0.1:19092"]\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bus.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_a_minimal_file_loads_with_default_topics(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, AGENCY))
    assert config.topics == TopicSettings()
    assert config.agency("interpol").bootstrap_servers == ("127.0.0.1:19092",)
    assert config.policy_file is None


def test_a_missing_file_says_how_to_get_one(tmp_path: Path) -> None:
    message = _error(tmp_path / "absent.toml")
    assert "not found" in message
    assert "bus local up" in message
    assert "BUS_CONFIG" in message


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    assert "not valid TOML" in _error(_write(tmp_path, "[agencies\n"))


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ("colour = 1\n" + AGENCY, "top level", "colour"),
        ('[topics]\nevent = "x"\n' + AGENCY, "[topics]", "event"),
        ('[policy]\npath = "p.toml"\n' + AGENCY, "[policy]", "path"),
        (AGENCY + 'password = "x"\n', "[agencies.interpol]", "password"),
        (
            AGENCY + '[agencies.interpol.tls]\nca_file = "a"\ncert_file = "b"\nkey_file = "c"\n'
            'pass = "d"\n',
            "[agencies.interpol.tls]",
            "pass",
        ),
    ],
)
def test_an_unknown_key_is_named_with_its_table(
    tmp_path: Path, text: str, where: str, key: str
) -> None:
    message = _error(_write(tmp_path, text))
    assert f"{where}: unknown key {key!r}" in message


def test_missing_agencies_table(tmp_path: Path) -> None:
    assert "[agencies]: missing table" in _error(_write(tmp_path, "[topics]\n"))


def test_empty_agencies(tmp_path: Path) -> None:
    assert "[agencies] is empty" in _error(_write(tmp_path, "[agencies]\n"))


@pytest.mark.parametrize("name", ["Interpol", "1st", "a" * 64])
def test_a_bad_agency_id_is_named(tmp_path: Path, name: str) -> None:
    text = f'[agencies.{name}]\nbootstrap_servers = ["127.0.0.1:1"]\n'
    message = _error(_write(tmp_path, text))
    assert f"[agencies.{name}]" in message
    assert "lowercase" in message


@pytest.mark.parametrize(
    "servers",
    ["[]", '"127.0.0.1:19092"', '["127.0.0.1"]', '["host:port"]', '["a b:1"]', "[19092]"],
)
def test_bad_bootstrap_servers(tmp_path: Path, servers: str) -> None:
    text = f"[agencies.interpol]\nbootstrap_servers = {servers}\n"
    message = _error(_write(tmp_path, text))
    assert "agencies.interpol.bootstrap_servers" in message
    assert "host:port" in message


def test_missing_bootstrap_servers(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, '[agencies.interpol]\nsigning_key = "k.pem"\n'))
    assert "agencies.interpol.bootstrap_servers" in message


@pytest.mark.parametrize("missing", ["ca_file", "cert_file", "key_file"])
def test_an_incomplete_tls_table_names_the_missing_file(tmp_path: Path, missing: str) -> None:
    entries = {"ca_file": "ca.pem", "cert_file": "app.pem", "key_file": "app.key.pem"}
    del entries[missing]
    tls = "".join(f'{k} = "{v}"\n' for k, v in entries.items())
    message = _error(_write(tmp_path, AGENCY + "[agencies.interpol.tls]\n" + tls))
    assert f"agencies.interpol.tls.{missing}: expected a non-empty string" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("topics = 1\n" + AGENCY, "topics"),
        ('[topics]\nevents = ""\n' + AGENCY, "topics.events"),
        ("[agencies]\ninterpol = 1\n", "agencies.interpol"),
        (AGENCY + "tls = 1\n", "agencies.interpol.tls"),
        (AGENCY + "signing_key = 1\n", "agencies.interpol.signing_key"),
        ("[policy]\nfile = 3\n" + AGENCY, "policy.file"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(tmp_path: Path, text: str, key: str) -> None:
    assert f": {key}: expected" in _error(_write(tmp_path, text))


def test_relative_paths_resolve_against_the_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    text = (
        '[policy]\nfile = "policy.toml"\n'
        + AGENCY
        + 'signing_key = "keys/interpol.key.pem"\ntrust_store = "/etc/bus/trust.toml"\n'
        + '[agencies.interpol.tls]\nca_file = "tls/ca.pem"\ncert_file = "tls/app.pem"\n'
        + 'key_file = "../app.key.pem"\n'
    )
    config = load_config(_write(folder, text))
    interpol = config.agency("interpol")
    assert config.policy_file == folder / "policy.toml"
    assert interpol.signing_key == folder / "keys" / "interpol.key.pem"
    assert interpol.trust_store == Path("/etc/bus/trust.toml")
    assert interpol.tls == TlsSettings(
        ca_file=folder / "tls" / "ca.pem",
        cert_file=folder / "tls" / "app.pem",
        key_file=folder / ".." / "app.key.pem",
    )


def test_render_toml_round_trips_through_load_config(tmp_path: Path) -> None:
    path = tmp_path / "bus.toml"
    config = Config(
        path=path,
        agencies={
            "interpol": AgencySettings(
                name="interpol",
                bootstrap_servers=("127.0.0.1:19092", "127.0.0.1:19094"),
                signing_key=tmp_path / "keys" / "interpol.key.pem",
                trust_store=tmp_path / "keys" / "trust.toml",
                tls=TlsSettings(
                    ca_file=tmp_path / "ca.pem",
                    cert_file=Path("/etc/tls/app.pem"),
                    key_file=tmp_path / "app.key.pem",
                ),
                identities={
                    "admin": TlsSettings(
                        ca_file=tmp_path / "ca.pem",
                        cert_file=tmp_path / "admin.pem",
                        key_file=tmp_path / "admin.key.pem",
                    ),
                    "bridge.interpol.europol": TlsSettings(
                        ca_file=tmp_path / "other-ca.pem",
                        cert_file=tmp_path / "b.pem",
                        key_file=tmp_path / "b.key.pem",
                    ),
                },
            ),
            "europol": AgencySettings(name="europol", bootstrap_servers=("kafka:9093",)),
        },
        topics=TopicSettings(events="ev", quarantine='q"uote', audit="au"),
        policy_file=tmp_path / "policy.toml",
    )
    text = render_toml(config, header="first line\n\nthird line")
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == config
    assert text.startswith("# first line\n#\n# third line\n")
    assert 'signing_key = "keys/interpol.key.pem"' in text  # relative to the file's folder
    assert 'cert_file = "/etc/tls/app.pem"' in text


def test_mirror_of_prefixes_the_origin() -> None:
    assert TopicSettings().mirror_of("europol") == "europol.intel.events"
    assert TopicSettings(events="ev").mirror_of("interpol") == "interpol.ev"


@pytest.mark.parametrize(
    ("topic", "agency"),
    [
        ("europol.intel.events", "europol"),
        ("intel.events", None),
        ("bus.quarantine", None),
        ("europol.intel.events.x", None),
        ("Europol.intel.events", None),
        ("europol\n.intel.events", None),
        (".intel.events", None),
    ],
)
def test_mirrored_from_names_the_agency_of_a_mirrored_feed_only(
    topic: str, agency: str | None
) -> None:
    assert TopicSettings().mirrored_from(topic) == agency


@pytest.mark.parametrize(
    ("topic", "agency"),
    [
        ("interpol.intel.events", "interpol"),
        ("interpol.any.topic.at.all", "interpol"),
        ("ameripol.cases", "ameripol"),
        ("europol.intel.events", None),  # the reader's own prefix
        ("fbi.intel.events", None),  # not configured
        ("intel.events", None),
        ("interpol.", None),
        ("Interpol.intel.events", None),
        ("interpol\n.intel.events", None),
    ],
)
def test_mirror_source_is_any_other_configured_agency_prefix(
    topic: str, agency: str | None
) -> None:
    config = Config(
        path=None,
        agencies={
            name: AgencySettings(name=name, bootstrap_servers=("127.0.0.1:9092",))
            for name in ("interpol", "europol", "ameripol")
        },
    )
    assert config.mirror_source(topic, reader="europol") == agency


def test_an_unknown_agency_lists_the_configured_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, AGENCY)
    config = load_config(path)
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: no agency 'fbi'.*interpol"):
        config.agency("fbi")


def test_environment_variables_choose_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUS_CONFIG", raising=False)
    monkeypatch.delenv("BUS_HOME", raising=False)
    monkeypatch.delenv("BUS_KAFKA_JARS", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_home() == tmp_path / "state" / "exchange-bus"
    assert default_config_path() == tmp_path / "state" / "exchange-bus" / "bus.toml"
    assert default_jar_cache("4.1.1") == tmp_path / "cache" / "exchange-bus" / "kafka-4.1.1" / "lib"
    monkeypatch.setenv("BUS_HOME", str(tmp_path / "home"))
    assert default_config_path() == tmp_path / "home" / "bus.toml"
    monkeypatch.setenv("BUS_CONFIG", str(tmp_path / "other.toml"))
    assert default_config_path() == tmp_path / "other.toml"
    monkeypatch.setenv("BUS_KAFKA_JARS", str(tmp_path / "jars"))
    assert default_jar_cache("4.1.1") == tmp_path / "jars"


TLS = (
    AGENCY
    + '[agencies.interpol.tls]\nca_file = "ca.pem"\ncert_file = "app.pem"\nkey_file = "app.key"\n'
)


def test_an_identity_takes_the_tables_ca_unless_it_names_its_own(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        TLS
        + '[agencies.interpol.tls.identities."bridge.interpol.europol"]\n'
        + 'cert_file = "b.pem"\nkey_file = "b.key"\n'
        + "[agencies.interpol.tls.identities.admin]\n"
        + 'ca_file = "other.pem"\ncert_file = "a.pem"\nkey_file = "a.key"\n',
    )
    interpol = load_config(path).agency("interpol")
    bridge = interpol.as_identity("bridge.interpol.europol")
    assert bridge.tls == TlsSettings(
        ca_file=tmp_path / "ca.pem", cert_file=tmp_path / "b.pem", key_file=tmp_path / "b.key"
    )
    assert bridge.bootstrap_servers == interpol.bootstrap_servers
    admin = interpol.as_identity("admin").tls
    assert admin is not None
    assert admin.ca_file == tmp_path / "other.pem"
    assert interpol.tls is not None
    assert interpol.tls.cert_file == tmp_path / "app.pem"


def test_a_missing_identity_is_an_error_not_the_applications_certificate(
    tmp_path: Path,
) -> None:
    interpol = load_config(_write(tmp_path, TLS)).agency("interpol")
    with pytest.raises(ConfigError, match=r"no TLS identity 'bridge.interpol.europol'.*none"):
        interpol.as_identity("bridge.interpol.europol")


def test_without_tls_an_identity_is_the_plain_settings(tmp_path: Path) -> None:
    interpol = load_config(_write(tmp_path, AGENCY)).agency("interpol")
    assert interpol.as_identity("admin") is interpol


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[agencies.interpol.tls.identities.Admin]\ncert_file = "a"\nkey_file = "b"\n', "name"),
        ('[agencies.interpol.tls.identities.admin]\ncert_file = "a"\n', "key_file"),
        (
            '[agencies.interpol.tls.identities.admin]\ncert_file = "a"\nkey_file = "b"\nx = 1\n',
            "unknown key 'x'",
        ),
    ],
)
def test_a_bad_identity_is_named(tmp_path: Path, table: str, message: str) -> None:
    assert message in _error(_write(tmp_path, TLS + table))
