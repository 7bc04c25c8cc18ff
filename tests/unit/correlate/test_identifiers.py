"""Identifiers normalised: equal things in other forms get one key; garbage gets none."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.correlate._identifiers import (
    IDENTIFIER_KINDS,
    MAX_IDENTIFIERS,
    Identifier,
    identifiers,
    normalise,
)

SAME = [
    ("IMO", ["IMO 9074729", "imo9074729", "IMO: 9074729", "9074729", " Imo 9074729 "], "9074729"),
    ("MMSI", ["235009802", "MMSI 235009802", "mmsi: 235 009 802", "235-009-802"], "235009802"),
    (
        "IP_ADDRESS",
        [
            "2001:db8::1",
            "2001:0db8:0000:0000:0000:0000:0000:0001",
            "2001:DB8:0:0:0:0:0:1",
            "[2001:db8::1]",
            "2001:db8::1/128",
        ],
        "2001:db8::1",
    ),
    ("IP_ADDRESS", ["192.0.2.1", "::ffff:192.0.2.1", "192.0.2[.]1", "192.0.2.1/32"], "192.0.2.1"),
    ("IP_ADDRESS", ["192.0.2.0/24", "192.0.2.77/24", "::ffff:192.0.2.0/120"], "192.0.2.0/24"),
    (
        "DOMAIN",
        ["evil.example.org", "Evil.Example.ORG.", "EVIL.EXAMPLE.ORG", "evil[.]example.org"],
        "evil.example.org",
    ),
    (
        "DOMAIN",
        ["bücher.example", "BÜCHER.example", "xn--bcher-kva.example"],
        "xn--bcher-kva.example",
    ),
    (
        "EMAIL",
        [
            "John.Doe@Example.COM",
            "john.doe@example.com",
            "mailto:JOHN.DOE@example.com",
            "John Doe <john.doe@EXAMPLE.com>",
            "john.doe[@]example[.]com",
        ],
        "john.doe@example.com",
    ),
    (
        "PHONE",
        [
            "+44 20 7946 0958",
            "0044 20 7946 0958",
            "+44 (0)20 7946 0958",
            "+44-20-7946-0958",
            "(+44) 20 7946 0958".replace("(+44)", "+44"),
            "tel:+442079460958",
            "+44.20.7946.0958",
        ],
        "+442079460958",
    ),
    ("DOCUMENT", ["P4421907", "p4421907", "P 442 1907", "P-442-1907", "p.442.1907"], "P4421907"),
    (
        "CRYPTO_ADDRESS",
        [
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ",
            "bitcoin:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq?amount=1",
        ],
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
    ),
    (
        "CRYPTO_ADDRESS",
        [
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "0x52908400098527886e0f7030069857d2e4169ee7",
        ],
        "0x52908400098527886e0f7030069857d2e4169ee7",
    ),
    (
        "FILE_HASH",
        ["sha256:" + "AB" * 32, "SHA-256:" + "ab" * 32, "ab" * 32, "sha_256:" + "Ab" * 32],
        "sha256:" + "ab" * 32,
    ),
    (
        "URL",
        [
            "https://Example.COM/Path?q=1",
            "HTTPS://example.com:443/Path?q=1#top",
            "hxxps://example[.]com/Path?q=1",
        ],
        "https://example.com/Path?q=1",
    ),
]


@pytest.mark.parametrize(("kind", "forms", "value"), SAME)
def test_equivalent_forms_have_one_key(kind: str, forms: list[str], value: str) -> None:
    keys = {normalise(kind, form) for form in forms}
    assert len(keys) == 1, keys
    (identifier,) = keys
    assert identifier is not None
    assert identifier.value == value


DIFFERENT = [
    ("CRYPTO_ADDRESS", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "1boatslrhtknngkdxeeobr76b53lettpyt"),
    ("URL", "https://example.com/Path", "https://example.com/path"),
    ("DOMAIN", "www.example.org", "example.org"),
    ("IP_ADDRESS", "192.0.2.0/24", "192.0.2.0/25"),
    ("PHONE", "+44 20 7946 0958", "+44 20 7946 0959"),
]


@pytest.mark.parametrize(("kind", "one", "other"), DIFFERENT)
def test_different_things_keep_different_keys(kind: str, one: str, other: str) -> None:
    first, second = normalise(kind, one), normalise(kind, other)
    assert first is not None
    assert second is not None
    assert first != second


GARBAGE = [
    ("IMO", "IMO 9074728"),  # wrong check digit
    ("IMO", "MV NORTHERN DAWN"),
    ("MMSI", "12345678"),
    ("IP_ADDRESS", "999.1.1.1"),
    ("IP_ADDRESS", "fe80::1%eth0"),
    ("IP_ADDRESS", "192.0.2.1/33"),
    ("DOMAIN", "localhost"),
    ("DOMAIN", "192.0.2.1"),
    ("DOMAIN", "bad_label-.example"),
    ("DOMAIN", "a..b"),
    ("DOMAIN", "x" * 64 + ".example"),
    ("EMAIL", "no-at-sign"),
    ("EMAIL", "a b@example.com"),
    ("EMAIL", "someone@localhost"),
    ("PHONE", "020 7946 0958"),  # national: which country?
    ("PHONE", "+0 123 4567"),
    ("PHONE", "+12"),
    ("PHONE", "+44 20 CALL ME"),
    ("DOCUMENT", "passport"),
    ("DOCUMENT", "A1"),
    ("CRYPTO_ADDRESS", "not an address"),
    ("CRYPTO_ADDRESS", "Bc1qMixedCase0000000"),
    ("FILE_HASH", "sha1:" + "ab" * 32),
    ("FILE_HASH", "md5:xyz"),
    ("FILE_HASH", "ab" * 7),
    ("URL", "not a url"),
    ("URL", "http://example.com:99999/"),
    ("URL", "mailto:x@example.com"),
    ("NO_SUCH_KIND", "anything"),
    ("DOMAIN", ""),
    ("DOMAIN", "x" * 5000),
]


@pytest.mark.parametrize(("kind", "text"), GARBAGE)
def test_garbage_is_no_identifier(kind: str, text: str) -> None:
    assert normalise(kind, text) is None


@given(st.sampled_from(IDENTIFIER_KINDS), st.text(max_size=80))
def test_any_text_is_an_identifier_or_none_and_never_raises(kind: str, text: str) -> None:
    identifier = normalise(kind, text)
    assert identifier is None or isinstance(identifier, Identifier)


@given(
    st.sampled_from(IDENTIFIER_KINDS),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
    | st.from_regex(r"[a-zA-Z0-9.:/@+ ()\[\]-]{1,60}", fullmatch=True),
)
def test_normalising_is_idempotent(kind: str, text: str) -> None:
    identifier = normalise(kind, text)
    if identifier is not None:
        assert normalise(identifier.kind, identifier.value) == identifier


def _imo(six: str) -> str:
    check = sum(int(d) * w for d, w in zip(six, range(7, 1, -1), strict=True)) % 10
    return f"{six}{check}"


@given(
    st.from_regex(r"[1-9][0-9]{5}", fullmatch=True),
    st.sampled_from(["IMO ", "imo", "IMO: ", "", "Imo-", "IMO#"]),
)
def test_an_imo_number_in_any_spelling_is_one_key(six: str, prefix: str) -> None:
    number = _imo(six)
    assert normalise("IMO", prefix + number) == Identifier("IMO", number)
    wrong = number[:6] + str((int(number[6]) + 1) % 10)
    assert normalise("IMO", prefix + wrong) is None


@given(st.ip_addresses(v=6))
def test_an_ipv6_address_compressed_or_not_is_one_key(address: ipaddress.IPv6Address) -> None:
    forms = {address.compressed, address.exploded, address.exploded.upper(), f"[{address}]"}
    keys = {normalise("IP_ADDRESS", form) for form in forms}
    assert len(keys) == 1
    assert None not in keys


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_and_its_mapped_form_are_one_key(address: ipaddress.IPv4Address) -> None:
    mapped = f"::ffff:{address}"
    assert normalise("IP_ADDRESS", mapped) == normalise("IP_ADDRESS", str(address))
    assert normalise("IP_ADDRESS", str(address)) == Identifier("IP_ADDRESS", str(address))


@given(
    st.from_regex(r"[1-9][0-9]{0,2}", fullmatch=True),
    st.lists(st.from_regex(r"[0-9]{2,4}", fullmatch=True), min_size=2, max_size=4),
    st.sampled_from(["+", "00", "+ ", "tel:+"]),
    st.sampled_from([" ", "-", ".", "", " - "]),
)
def test_a_phone_number_in_any_international_form_is_one_key(
    country: str, groups: list[str], prefix: str, separator: str
) -> None:
    digits = country + "".join(groups)
    if not 7 <= len(digits) <= 15:
        return
    text = prefix + country + " " + separator.join(groups)
    assert normalise("PHONE", text) == Identifier("PHONE", "+" + digits)


@given(
    st.lists(
        st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True), min_size=1, max_size=3
    ),
    st.sampled_from(["org", "example", "net"]),
    st.booleans(),
    st.booleans(),
)
def test_a_domain_in_any_case_with_or_without_the_root_dot_is_one_key(
    labels: list[str], tld: str, upper: bool, root: bool
) -> None:
    name = ".".join([*labels, tld])
    text = (name.upper() if upper else name) + ("." if root else "")
    assert normalise("DOMAIN", text) == Identifier("DOMAIN", name)


def test_an_events_subjects_and_attributes_give_its_identifiers() -> None:
    event = {
        "subjects": [
            {
                "kind": "VESSEL",
                "value": "MV NORTHERN DAWN",
                "attributes": {"imo": "9312456", "MMSI": "636019825"},
            },
            {"kind": "VESSEL", "value": "IMO 9074729", "attributes": {}},
            {
                "kind": "PERSON",
                "value": "DOE, John",
                "attributes": {"passport_number": "x 123 456"},
            },
            {"kind": "IP_ADDRESS", "value": "198.51.100.0/24", "attributes": {"port": "443"}},
            {"kind": "DOMAIN", "value": "not a domain", "attributes": {}},
            {"kind": "LOCATION", "value": "3.5N 5.2E", "attributes": {}},
            "not a subject",
            {"kind": "EMAIL_ADDRESS", "value": 42, "attributes": "nope"},
        ]
    }
    assert identifiers(event) == {
        Identifier("IMO", "9312456"),
        Identifier("MMSI", "636019825"),
        Identifier("IMO", "9074729"),
        Identifier("DOCUMENT", "X123456"),
        Identifier("IP_NETWORK", "198.51.100.0/24"),
    }


def test_an_event_without_usable_subjects_has_none() -> None:
    assert identifiers({}) == frozenset()
    assert identifiers({"subjects": "nope"}) == frozenset()


def test_an_event_gives_at_most_max_identifiers() -> None:
    subjects = [
        {"kind": "DOMAIN", "value": f"host{i}.example", "attributes": {}}
        for i in range(MAX_IDENTIFIERS + 50)
    ]
    assert len(identifiers({"subjects": subjects})) == MAX_IDENTIFIERS
