"""The local federation's certificates: one CA per agency, a node certificate, client certificates.

Under the federation's home, per agency (every file 0600, the folders 0700)::

    tls/<agency>/ca.pem, ca.key.pem          the agency's CA (only this agency's cluster trusts it)
    tls/<agency>/<agency>-broker.pem, .key.pem  the node: its broker and controller listeners,
    tls/<agency>/node.keystore.pem           and the client side of its own connections to the
                                             quorum (key + certificate, Kafka's PEM keystore)
    tls/<agency>/node-<id>.pem               a cluster of several nodes: each node's own key and
    tls/<agency>/node-<id>.keystore.pem      certificate (one principal, ``<agency>-broker``)
    tls/<agency>/<principal>.pem, .key.pem   one client certificate per principal (below)

Principals (the certificate's CN; the nodes map ``CN=x,...`` to ``User:x``, see
:data:`PRINCIPAL_MAPPING_RULES`):

- ``<agency>-broker``: the cluster's nodes (a super user: inter-broker and controller
  traffic); each node of a larger cluster has a key and certificate of its own, all with this
  name, and the same loopback SAN (every local node listens on 127.0.0.1);
- ``<agency>-admin``: the operator, and ``bus local`` itself (a super user);
- ``<agency>-app``: the agency's applications (publishers, subscribers, the CLI);
- ``bridge.<source>.<destination>``: one per bridge direction, on both clusters it touches,
  each certificate issued by that cluster's CA. Agency ids hold no dots, so the name of one
  direction can never be the name of another (``bridge-a-b-c`` could be a->b-c or a-b->c).

Keys are ECDSA P-256 in unencrypted PKCS#8 PEM (Kafka's PEM keystore reads only PKCS#8).
Certificates are reused by later ``up``s; what is missing, expires within
:data:`RENEW_BEFORE`, or was not issued by the current CA is made again.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bus.config import TlsSettings, bridge_identity, correlator_identity
from bus.errors import LocalClusterError
from bus.local._spec import HOST, FederationSpec

__all__ = [
    "CA_LIFETIME",
    "LEAF_LIFETIME",
    "PRINCIPAL_MAPPING_RULES",
    "RENEW_BEFORE",
    "CertificateInfo",
    "TlsLayout",
    "admin_principal",
    "app_principal",
    "bridge_principal",
    "correlator_principal",
    "broker_principal",
    "certificate_info",
    "ensure_certificates",
    "issue",
    "new_ca",
    "tls_layout",
    "write_private",
]

CA_LIFETIME: Final = dt.timedelta(days=3 * 365)
LEAF_LIFETIME: Final = dt.timedelta(days=365)
RENEW_BEFORE: Final = dt.timedelta(days=30)
_BACKDATE: Final = dt.timedelta(hours=1)  # clocks of the nodes and clients may differ a little

ORGANIZATION: Final = "Exchange Bus local federation"

PRINCIPAL_MAPPING_RULES: Final = "RULE:^CN=([^,]+),.*$/$1/,RULE:^CN=([^,]+)$/$1/,DEFAULT"
"""``ssl.principal.mapping.rules``: a certificate's principal is ``User:<its CN>``."""

Log = Callable[[str], None]


def broker_principal(agency: str) -> str:
    return f"{agency}-broker"


def admin_principal(agency: str) -> str:
    return f"{agency}-admin"


def app_principal(agency: str) -> str:
    return f"{agency}-app"


def bridge_principal(source: str, destination: str) -> str:
    return bridge_identity(source, destination)


def correlator_principal(agency: str) -> str:
    return correlator_identity(agency)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsLayout:
    """Where one agency's CA, node and client certificates are."""

    dir: Path
    agency: str
    brokers: int = 1
    """Nodes in the agency's cluster: one keystore each."""

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.dir / "ca.key.pem"

    @property
    def node_keystore(self) -> Path:
        """The keystore of a lone node (:meth:`keystore` names each node's)."""
        return self.dir / "node.keystore.pem"

    def keystore(self, node_id: int) -> Path:
        """Node ``node_id``'s keystore: its key and certificate (Kafka's PEM keystore)."""
        return (
            self.node_keystore if self.brokers == 1 else self.dir / f"node-{node_id}.keystore.pem"
        )

    def node_cert(self, node_id: int) -> Path:
        """Node ``node_id``'s certificate."""
        if self.brokers == 1:
            return self.cert_file(broker_principal(self.agency))
        return self.dir / f"node-{node_id}.pem"

    def cert_file(self, principal: str) -> Path:
        return self.dir / f"{principal}.pem"

    def key_file(self, principal: str) -> Path:
        return self.dir / f"{principal}.key.pem"

    def client(self, principal: str) -> TlsSettings:
        """The client settings of ``principal`` on this agency's cluster."""
        return TlsSettings(
            ca_file=self.ca_file,
            cert_file=self.cert_file(principal),
            key_file=self.key_file(principal),
        )

    def principals(self, peers: Iterable[str]) -> list[str]:
        """Every client principal of this cluster: admin, apps, each bridge touching it."""
        result = [
            admin_principal(self.agency),
            app_principal(self.agency),
            correlator_principal(self.agency),
        ]
        for peer in peers:
            result += [bridge_principal(self.agency, peer), bridge_principal(peer, self.agency)]
        return result


def tls_layout(spec: FederationSpec, agency: str) -> TlsLayout:
    """Where ``agency``'s certificates are in the federation ``spec``."""
    return TlsLayout(dir=spec.tls_dir / agency, agency=agency, brokers=spec.brokers)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateInfo:
    """What ``bus local status`` shows of one certificate."""

    path: Path
    subject: str
    not_after: dt.datetime


def ensure_certificates(
    layout: TlsLayout,
    peers: Sequence[str],
    *,
    log: Log,
    now: dt.datetime | None = None,
    hosts: Sequence[str] = (),
) -> bool:
    """Make what is missing, expiring or not issued by the CA; whether a node's changed.

    ``hosts``: addresses the node listens on besides loopback (a node behind a long link);
    a node certificate that does not name them all is made again.
    A running node keeps the certificate it started with until it restarts: the caller says so.
    """
    now = now or dt.datetime.now(dt.UTC)
    layout.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.dir, 0o700)
    ca_cert, ca_key = _ensure_ca(layout, now, log)
    node_changed = False
    node = broker_principal(layout.agency)
    for node_id in range(1, layout.brokers + 1):
        cert_file, keystore = layout.node_cert(node_id), layout.keystore(node_id)
        if _needs_new(cert_file, ca_cert, now, hosts=hosts) or not keystore.exists():
            cert, key = issue(ca_cert, ca_key, node, now=now, server=True, hosts=hosts)
            if layout.brokers == 1:
                _write_pair(layout, node, cert, key)
            else:  # the key only in the keystore: one file less to protect per node
                write_private(cert_file, _cert_pem(cert))
            write_private(keystore, _key_pem(key) + _cert_pem(cert))
            log(f"{layout.agency}: new node certificate {cert_file}")
            node_changed = True
    for principal in layout.principals(peers):
        if (
            _needs_new(layout.cert_file(principal), ca_cert, now)
            or not layout.key_file(principal).exists()
        ):
            cert, key = issue(ca_cert, ca_key, principal, now=now)
            _write_pair(layout, principal, cert, key)
            log(f"{layout.agency}: new client certificate for {principal}")
    return node_changed


def certificate_info(path: Path) -> CertificateInfo | None:
    """Subject and expiry of the certificate in ``path`` (None when it cannot be read)."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return CertificateInfo(
        path=path, subject=cert.subject.rfc4514_string(), not_after=cert.not_valid_after_utc
    )


def new_ca(
    name: str, *, now: dt.datetime, lifetime: dt.timedelta = CA_LIFETIME
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate for ``name`` and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"{name} CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    now: dt.datetime,
    lifetime: dt.timedelta = LEAF_LIFETIME,
    server: bool = False,
    not_before: dt.datetime | None = None,
    hosts: Sequence[str] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for ``common_name`` signed by the CA (a node's when ``server``: for
    loopback, ``localhost`` and the IP addresses ``hosts``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    start = not_before or now - _BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + lifetime + _BACKDATE, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    *(x509.IPAddress(ipaddress.ip_address(h)) for h in _addresses(hosts)),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600 from the first byte)."""
    staging = path.with_name(f".{path.name}.new")
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(staging, path)


def _ensure_ca(
    layout: TlsLayout, now: dt.datetime, log: Log
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if layout.ca_file.exists() and layout.ca_key_file.exists():
        try:
            cert = x509.load_pem_x509_certificate(layout.ca_file.read_bytes())
            key = serialization.load_pem_private_key(layout.ca_key_file.read_bytes(), None)
        except ValueError as exc:
            raise LocalClusterError(
                f"{layout.dir}: the CA of {layout.agency} cannot be read ({exc}); delete the "
                "folder to have a new CA and certificates made"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise LocalClusterError(f"{layout.ca_key_file}: not an EC key; delete {layout.dir}")
        if cert.not_valid_after_utc - RENEW_BEFORE > now:
            return cert, key
        log(f"{layout.agency}: the CA expires {cert.not_valid_after_utc:%Y-%m-%d}; a new one")
    cert, key = new_ca(layout.agency, now=now)
    write_private(layout.ca_key_file, _key_pem(key))
    write_private(layout.ca_file, _cert_pem(cert))
    log(f"{layout.agency}: new CA {layout.ca_file}")
    return cert, key


def _addresses(hosts: Sequence[str]) -> list[str]:
    """Loopback and ``hosts``, each once, loopback first."""
    return list(dict.fromkeys([HOST, *hosts]))


def _needs_new(
    path: Path, ca_cert: x509.Certificate, now: dt.datetime, *, hosts: Sequence[str] = ()
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return True
    if cert.not_valid_after_utc - RENEW_BEFORE <= now:
        return True
    if hosts:
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return True
        named = {str(a) for a in names.get_values_for_type(x509.IPAddress)}
        if not set(hosts) <= named:
            return True
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return True
    return False


def _write_pair(
    layout: TlsLayout, principal: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    write_private(layout.key_file(principal), _key_pem(key))
    write_private(layout.cert_file(principal), _cert_pem(cert))


def _name(common_name: str) -> x509.Name:
    # CN first in RFC 4514/2253 order (the order Kafka sees), so the mapping rule takes the CN.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
