"""Identifiers of an event's subjects, normalised so that equal things get one key.

Pure: no Kafka, no clock. ``identifiers(event)`` reads the typed ``subjects`` of an
``IntelligenceEvent`` (and a few attributes: ``imo``, ``mmsi``, ``email``, ``phone``,
``document_number``, ``passport_number``, ``ip``, ``domain``) and returns the set of
``Identifier`` (kind + normalised value) it names. ``normalise(kind, text)`` does one value;
it returns ``None`` for a value that is not a usable identifier of that kind (garbage, a name,
a national phone number...) and never raises on any string.

The rules (docs/correlate.md has them with examples):

==============  ==========================================================================
kind            normalised value
==============  ==========================================================================
IMO             the 7 digits of an IMO number whose check digit is right ("IMO 9074729",
                "imo9074729", "IMO: 9074729"); a wrong check digit is not an IMO number
MMSI            the 9 digits ("MMSI 235 009 802")
IP_ADDRESS      ``ipaddress``'s compressed form; IPv4-mapped IPv6 (``::ffff:a.b.c.d``) is the
                IPv4 address; brackets and a port-less ``[...]`` are removed; a zone is refused
IP_NETWORK      ``a.b.c.d/n`` or ``x::/n`` with the host bits cleared; a /32 (/128) is the
                address itself (IP_ADDRESS)
DOMAIN          lowercase, without the trailing dot, IDNA labels as punycode (``xn--``);
                ``www.`` is kept: www.example.org and example.org are different hosts
EMAIL           ``local@domain`` lowercased as a whole, the domain as DOMAIN; no provider
                rules (dots and ``+tags`` stay): ``mailto:`` and ``Name <...>`` removed
PHONE           E.164: ``+`` and the digits; ``+`` or ``00`` and a country code are needed
                (a national number is ambiguous); spaces, dashes, dots, slashes and
                parentheses removed, a trunk ``(0)`` after the country code dropped
DOCUMENT        uppercase letters and digits only (spaces, dashes, dots, slashes removed)
CRYPTO_ADDRESS  bech32/bech32m (``bc1``, ``tb1``, ``ltc1``... in one case) lowercase; ``0x``
                + 40 hex (Ethereum) lowercase; other letters and digits (base58...) exactly
                as written; a payment URI's scheme and parameters removed
FILE_HASH       ``algorithm:hex`` lowercase (md5, sha1, sha256, sha512 by length when the
                algorithm is not given; ``SHA-256`` is ``sha256``); a wrong length is refused
URL             scheme and host lowercase (host as DOMAIN or IP), default port dropped, empty
                path ``/``, fragment dropped; path and query as written
==============  ==========================================================================

Defanged indicators (``hxxp://``, ``[.]``, ``(.)``, ``[@]``) are refanged first.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "IDENTIFIER_KINDS",
    "MAX_IDENTIFIERS",
    "Identifier",
    "identifiers",
    "normalise",
]

IDENTIFIER_KINDS: Final = (
    "IMO",
    "MMSI",
    "IP_ADDRESS",
    "IP_NETWORK",
    "DOMAIN",
    "EMAIL",
    "PHONE",
    "DOCUMENT",
    "CRYPTO_ADDRESS",
    "FILE_HASH",
    "URL",
)
"""The kinds of identifier, as in ``CorrelationHit.identifier_kind``."""

MAX_IDENTIFIERS: Final = 256
"""At most this many identifiers are taken from one event (a hostile event may list more)."""

_MAX_TEXT: Final = 2048
"""Longer values are not identifiers (the longest here, a URL, is cut off by browsers at 2 KB)."""


@dataclass(frozen=True, slots=True, order=True)
class Identifier:
    """One normalised identifier: two subjects name the same thing when these are equal."""

    kind: str
    value: str

    @property
    def key(self) -> str:
        """``kind:value``: the index key."""
        return f"{self.kind}:{self.value}"


# Subject kinds of the event schema -> the identifier kinds their value may be.
_SUBJECT_KINDS: Final[Mapping[str, tuple[str, ...]]] = {
    "VESSEL": ("IMO", "MMSI"),
    "IP_ADDRESS": ("IP_ADDRESS", "IP_NETWORK"),
    "DOMAIN": ("DOMAIN",),
    "EMAIL_ADDRESS": ("EMAIL",),
    "PHONE_NUMBER": ("PHONE",),
    "CRYPTO_WALLET": ("CRYPTO_ADDRESS",),
    "FILE_HASH": ("FILE_HASH",),
    "URL": ("URL",),
    "DOCUMENT": ("DOCUMENT",),
}

# Attributes (of any subject) that name an identifier.
_ATTRIBUTE_KINDS: Final[Mapping[str, tuple[str, ...]]] = {
    "imo": ("IMO",),
    "mmsi": ("MMSI",),
    "email": ("EMAIL",),
    "phone": ("PHONE",),
    "document_number": ("DOCUMENT",),
    "passport_number": ("DOCUMENT",),
    "ip": ("IP_ADDRESS", "IP_NETWORK"),
    "domain": ("DOMAIN",),
}


def identifiers(event: Mapping[str, Any]) -> frozenset[Identifier]:
    """Every identifier the ``subjects`` of ``event`` name (at most ``MAX_IDENTIFIERS``).

    Tolerates anything: subjects that are not mappings, values that are not text.
    """
    found: set[Identifier] = set()
    subjects = event.get("subjects")
    if not isinstance(subjects, list | tuple):
        return frozenset()
    for subject in subjects:
        if not isinstance(subject, Mapping):
            continue
        kinds = _SUBJECT_KINDS.get(str(subject.get("kind")), ())
        found.update(_first(kinds, subject.get("value")))
        attributes = subject.get("attributes")
        if isinstance(attributes, Mapping):
            for name, value in attributes.items():
                found.update(_first(_ATTRIBUTE_KINDS.get(str(name).lower(), ()), value))
        if len(found) >= MAX_IDENTIFIERS:
            break
    return frozenset(sorted(found)[:MAX_IDENTIFIERS])


def _first(kinds: Iterable[str], value: object) -> list[Identifier]:
    """The identifier of the first of ``kinds`` that ``value`` is, if any."""
    if not isinstance(value, str):
        return []
    for kind in kinds:
        identifier = normalise(kind, value)
        if identifier is not None:
            return [identifier]
    return []


def normalise(kind: str, text: str) -> Identifier | None:
    """``text`` as an identifier of ``kind`` (one of ``IDENTIFIER_KINDS``), or ``None``.

    The kind of the result may differ: an ``IP_NETWORK`` of one address is an ``IP_ADDRESS``.
    Never raises for any ``str``.
    """
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        return None
    text = unicodedata.normalize("NFKC", text).strip()
    if not text:
        return None
    function = _NORMALISERS.get(kind)
    if function is None:
        return None
    try:
        return function(text)
    except (ValueError, UnicodeError):  # the parsers' ways of saying "not one of these"
        return None


# --- vessels -------------------------------------------------------------------------------

_IMO: Final = re.compile(r"(?:imo)?[\s:.#-]*(\d{7})", re.IGNORECASE)
_MMSI: Final = re.compile(r"(?:mmsi)?[\s:.#-]*(\d{9})", re.IGNORECASE)


def _imo(text: str) -> Identifier | None:
    match = _IMO.fullmatch(text)
    if match is None:
        return None
    digits = match[1]
    check = sum(int(d) * w for d, w in zip(digits[:6], range(7, 1, -1), strict=True)) % 10
    if check != int(digits[6]):
        return None
    return Identifier("IMO", digits)


def _mmsi(text: str) -> Identifier | None:
    match = _MMSI.fullmatch(re.sub(r"(?<=\d)[\s-](?=\d)", "", text))
    return Identifier("MMSI", match[1]) if match else None


# --- networks ------------------------------------------------------------------------------


def _refang(text: str) -> str:
    for defanged, plain in (("[.]", "."), ("(.)", "."), ("{.}", "."), ("[dot]", ".")):
        text = text.replace(defanged, plain)
    for defanged in ("[@]", "(@)", "[at]"):
        text = text.replace(defanged, "@")
    return text.replace("[:]", ":")


def _ip(text: str) -> Identifier | None:
    text = _refang(text)
    if "/" in text:
        return _network(text)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:
        return None  # a zone id names an interface of one host, not a global address
    address = ipaddress.ip_address(text)
    return Identifier("IP_ADDRESS", str(_unmapped(address)))


def _network(text: str) -> Identifier | None:
    text = _refang(text)
    if "/" not in text or "%" in text:
        return _ip(text) if "%" not in text and "/" not in text else None
    network = ipaddress.ip_network(text, strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        mapped = network.network_address.ipv4_mapped
        if network.prefixlen < 96:
            return None  # wider than the mapped range: not an IPv4 network
        network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    if network.num_addresses == 1:
        return Identifier("IP_ADDRESS", str(network.network_address))
    return Identifier("IP_NETWORK", str(network))


def _unmapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _domain(text: str) -> Identifier | None:
    name = _host(_refang(text))
    return Identifier("DOMAIN", name) if name is not None else None


def _host(text: str) -> str | None:
    """A DNS name, lowercase, ASCII (punycode), without the trailing dot; None if not one."""
    text = text.rstrip(".") if text.endswith(".") and not text.endswith("..") else text
    if not text or len(text) > 253:
        return None
    labels = []
    for label in text.split("."):
        if not label:
            return None
        if not label.isascii():
            label = label.encode("idna").decode("ascii")  # nameprep lowercases, then punycode
        label = label.lower()
        if not _LABEL.fullmatch(label):
            return None
        labels.append(label)
    if len(labels) < 2 or labels[-1].isdigit():
        return None  # one label is not a domain; a numeric TLD is an IPv4 address
    name = ".".join(labels)
    return name if len(name) <= 253 else None


def _email(text: str) -> Identifier | None:
    text = _refang(text)
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1]
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :]
    local, at, domain = text.strip().rpartition("@")
    if not at or not local or len(local) > 64 or any(c.isspace() for c in local):
        return None
    if local.startswith('"') != local.endswith('"'):
        return None
    host = _host(domain)
    if host is None:
        return None
    return Identifier("EMAIL", f"{local.lower()}@{host}")


# --- phones, documents ---------------------------------------------------------------------

_PHONE_SEPARATORS: Final = re.compile(r"[\s.\-/()]")


def _phone(text: str) -> Identifier | None:
    if text.lower().startswith("tel:"):
        text = text[4:]
    text = text.split(";", 1)[0].strip()  # tel: URI parameters (;ext=...)
    if text.startswith("+"):
        rest = text[1:]
    elif text.startswith("00"):
        rest = text[2:]
    else:
        return None  # a national number: which country's?
    # "+44 (0)20 ...": the trunk prefix written for national callers, not dialled from abroad.
    rest = re.sub(r"^(\s*\d{1,3})\s*\(0\)", r"\1", rest)
    digits = _PHONE_SEPARATORS.sub("", rest)
    if not digits.isascii() or not digits.isdigit() or digits.startswith("0"):
        return None
    if not 7 <= len(digits) <= 15:
        return None
    return Identifier("PHONE", f"+{digits}")


_DOCUMENT_SEPARATORS: Final = re.compile(r"[\s.\-/]")


def _document(text: str) -> Identifier | None:
    number = _DOCUMENT_SEPARATORS.sub("", text).upper()
    if not 4 <= len(number) <= 32 or not number.isascii() or not number.isalnum():
        return None
    if not any(c.isdigit() for c in number):
        return None  # a word, not a number
    return Identifier("DOCUMENT", number)


# --- crypto, hashes, URLs ------------------------------------------------------------------

_BECH32: Final = re.compile(r"[a-z]{1,83}1[a-z0-9]{6,87}")
"""bech32/bech32m in form (human-readable part, ``1``, data); the checksum is not checked: a
mistyped address only ever matches the same mistake."""
_SEGWIT_PREFIXES: Final = frozenset({"bc", "tb", "bcrt", "ltc", "tltc"})
_ADDRESS: Final = re.compile(r"[0-9A-Za-z]{16,128}")
"""Base58 and the other case-sensitive encodings: kept as written."""
_ETHEREUM: Final = re.compile(r"0x[0-9a-f]{40}")


def _crypto(text: str) -> Identifier | None:
    text = text.split("?", 1)[0]  # a payment URI's parameters (bitcoin:...?amount=)
    scheme, colon, rest = text.partition(":")
    if colon and scheme.isalpha():
        text = rest
    lowered = text.lower()
    if _BECH32.fullmatch(lowered):
        if text in (lowered, text.upper()):
            return Identifier("CRYPTO_ADDRESS", lowered)  # bech32: one case, case-insensitive
        if lowered.split("1", 1)[0] in _SEGWIT_PREFIXES:
            return None  # bech32 in mixed case is invalid (BIP 173), not a base58 address
    if _ETHEREUM.fullmatch(lowered):
        return Identifier("CRYPTO_ADDRESS", lowered)  # EIP-55 mixed case is only a checksum
    if _ADDRESS.fullmatch(text):
        return Identifier("CRYPTO_ADDRESS", text)  # base58 is case-sensitive
    return None


_HASH_LENGTHS: Final = {"md5": 32, "sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}
_BY_LENGTH: Final = {length: name for name, length in _HASH_LENGTHS.items() if name != "sha384"}
_HEX: Final = re.compile(r"[0-9a-f]+")


def _file_hash(text: str) -> Identifier | None:
    algorithm, colon, digest = text.rpartition(":")
    if not colon:
        algorithm, digest = "", text
    algorithm = re.sub(r"[\s_-]", "", algorithm).lower()
    digest = digest.strip().lower()
    if not _HEX.fullmatch(digest):
        return None
    if not algorithm:
        found = _BY_LENGTH.get(len(digest))
        if found is None:
            return None
        algorithm = found
    if _HASH_LENGTHS.get(algorithm) != len(digest):
        return None
    return Identifier("FILE_HASH", f"{algorithm}:{digest}")


_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}


def _url(text: str) -> Identifier | None:
    text = _refang(text)
    text = re.sub(r"^hxxp", "http", text, flags=re.IGNORECASE)
    text = re.sub(r"^fxp", "ftp", text, flags=re.IGNORECASE)
    if any(c.isspace() for c in text):
        return None
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc or parts.hostname is None:
        return None
    host: str | None
    raw_host = parts.hostname  # lowercased, brackets removed
    try:
        host = str(_unmapped(ipaddress.ip_address(raw_host)))
        if ":" in host:
            host = f"[{host}]"
    except ValueError:
        host = _host(raw_host)
    if host is None:
        return None
    port = parts.port  # ValueError for a port out of range: not a URL
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    return Identifier("URL", urlunsplit((scheme, netloc, parts.path or "/", parts.query, "")))


_NORMALISERS: Final = {
    "IMO": _imo,
    "MMSI": _mmsi,
    "IP_ADDRESS": _ip,
    "IP_NETWORK": _network,
    "DOMAIN": _domain,
    "EMAIL": _email,
    "PHONE": _phone,
    "DOCUMENT": _document,
    "CRYPTO_ADDRESS": _crypto,
    "FILE_HASH": _file_hash,
    "URL": _url,
}
