"""``bus.local._tls``: the CA and certificates of the local federation, made and reused."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from bus.local._tls import (
    PRINCIPAL_MAPPING_RULES,
    RENEW_BEFORE,
    TlsLayout,
    bridge_principal,
    ensure_certificates,
)

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _layout(tmp_path: Path) -> TlsLayout:
    return TlsLayout(dir=tmp_path / "tls" / "interpol", agency="interpol")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def test_every_principal_gets_a_certificate_of_the_agencys_ca_in_private_files(
    tmp_path: Path,
) -> None:
    layout = _layout(tmp_path)
    assert ensure_certificates(layout, ["europol"], log=lambda _: None, now=NOW)
    ca = _cert(layout.ca_file)
    principals = [
        "interpol-broker",
        "interpol-admin",
        "interpol-app",
        "bridge.interpol.europol",
        "bridge.europol.interpol",
    ]
    for principal in principals:
        cert = _cert(layout.cert_file(principal))
        assert _cn(cert) == principal
        cert.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(layout.key_file(principal).read_bytes(), None)
        assert key.public_key() == cert.public_key()
        assert layout.key_file(principal).read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    for path in layout.dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(layout.dir.stat().st_mode) == 0o700


def test_the_node_certificate_names_the_loopback_address_and_serves_both_sides(
    tmp_path: Path,
) -> None:
    layout = _layout(tmp_path)
    ensure_certificates(layout, [], log=lambda _: None, now=NOW)
    cert = _cert(layout.cert_file("interpol-broker"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    keystore = layout.node_keystore.read_bytes()
    assert keystore.startswith(b"-----BEGIN PRIVATE KEY")
    assert cert.public_bytes(serialization.Encoding.PEM) in keystore


def test_a_later_run_reuses_what_is_valid_and_remakes_what_is_missing_or_expiring(
    tmp_path: Path,
) -> None:
    layout = _layout(tmp_path)
    ensure_certificates(layout, ["europol"], log=lambda _: None, now=NOW)
    before = {p.name: p.read_bytes() for p in layout.dir.iterdir()}
    layout.cert_file("interpol-app").unlink()
    assert not ensure_certificates(layout, ["europol"], log=lambda _: None, now=NOW)
    after = {p.name: p.read_bytes() for p in layout.dir.iterdir()}
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"interpol-app.pem", "interpol-app.key.pem"}  # nothing else
    # A year on, less than RENEW_BEFORE before they expire: every leaf is made again.
    later = _cert(layout.cert_file("interpol-app")).not_valid_after_utc - RENEW_BEFORE / 2
    assert ensure_certificates(layout, ["europol"], log=lambda _: None, now=later)
    assert _cert(layout.cert_file("interpol-app")).not_valid_after_utc > later + RENEW_BEFORE


def test_a_new_ca_remakes_every_certificate_it_did_not_issue(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    ensure_certificates(layout, [], log=lambda _: None, now=NOW)
    layout.ca_file.unlink()
    ensure_certificates(layout, [], log=lambda _: None, now=NOW)
    ca = _cert(layout.ca_file)
    _cert(layout.cert_file("interpol-app")).verify_directly_issued_by(ca)
    _cert(layout.cert_file("interpol-broker")).verify_directly_issued_by(ca)


def test_bridge_principals_of_two_directions_never_coincide() -> None:
    # With '-' as the separator, a -> b-c and a-b -> c would both be "bridge-a-b-c".
    assert bridge_principal("a", "b-c") != bridge_principal("a-b", "c")


def test_the_mapping_rule_takes_the_common_name_first_in_the_dn() -> None:
    assert PRINCIPAL_MAPPING_RULES.startswith("RULE:^CN=([^,]+),")
    assert PRINCIPAL_MAPPING_RULES.endswith(",DEFAULT")


def test_a_node_on_its_own_address_gets_a_certificate_naming_it_too(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    ensure_certificates(layout, [], log=lambda _: None, now=NOW)
    loopback_only = _cert(layout.cert_file("interpol-broker"))
    # The same folder, the node now behind a link: its certificate is made again.
    assert ensure_certificates(layout, [], log=lambda _: None, now=NOW, hosts=["198.18.0.2"])
    cert = _cert(layout.cert_file("interpol-broker"))
    assert cert.serial_number != loopback_only.serial_number
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("198.18.0.2"),
    ]
    # ... and kept while it names the address.
    assert not ensure_certificates(layout, [], log=lambda _: None, now=NOW, hosts=["198.18.0.2"])
