"""Realistic traffic for the demo: events from every agency across the five areas, and forgeries.

Pure (no Kafka client): a seeded :class:`Traffic` draws events from the examples of
``bus._examples`` and varies what the release policy and the correlator look at:

- the crime area (the five of the agreement, and now and then ``OTHER``, which no agreement
  covers, so the policy denies it by ``crime-area``);
- TLP (mostly CLEAR/GREEN/AMBER, some AMBER_STRICT and RED, which never leave);
- handling codes H0-H3 (H3 with its conditions text), ``releasable_to`` (all peers, some, none),
  onward-forwarding consent, and a few events already expired;
- subjects, a share of them drawn from identifiers several agencies hold (vessel IMO/MMSI, IP
  addresses, domains, e-mail addresses, phone numbers, wallets), each written in one of its
  forms, so that a correlator finds the same vessel or server in two agencies' feeds however
  each agency writes it.

:meth:`Traffic.forgery` makes hostile records to be written raw (not through a publisher):
a bad signature, a key nobody trusts, an origin spoofed with the writer's own key, and a signed
event tampered with after signing. Each is quarantined by the bridges, never forwarded.
"""

from __future__ import annotations

import ipaddress
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bus import headers
from bus._examples import example
from bus.envelope import seal
from bus.signing import SigningKey

__all__ = [
    "AREAS",
    "FORGERY_KINDS",
    "SHARED_IDENTIFIERS",
    "Forgery",
    "SharedIdentifier",
    "Traffic",
]

AREAS: Final = (
    "MARITIME_PIRACY",
    "COUNTER_TERRORISM",
    "MAJOR_EVENT_SECURITY",
    "CYBERCRIME",
    "CHILD_SEXUAL_EXPLOITATION",
)
"""The five areas of the agreement."""

FORGERY_KINDS: Final = ("bad-signature", "unknown-key", "spoofed-origin", "tampered")
"""The hostile records :meth:`Traffic.forgery` makes, in turn."""

# Identifiers more than one agency holds, per area: (kind, forms of the value, attributes with
# the forms of each). Each agency writes them its own way (the same vessel as "IMO 9074729" or
# "imo9074729", a phone with "+44" or "0044", an IPv6 address compressed or expanded), and
# the correlator (bus.correlate._identifiers) normalises every form of one to the same key.
SharedIdentifier = tuple[str, tuple[str, ...], dict[str, tuple[str, ...]]]
SHARED_IDENTIFIERS: Final[dict[str, tuple[SharedIdentifier, ...]]] = {
    "MARITIME_PIRACY": (
        (
            "VESSEL",
            ("MV NORTHERN DAWN", "Northern Dawn"),
            {"imo": ("IMO 9074729", "imo9074729", "IMO: 9074729"), "mmsi": ("636019825",)},
        ),
        (
            "VESSEL",
            ("MT GULF PEARL",),
            {"imo": ("IMO 9312456", "9312456"), "mmsi": ("MMSI 357 123 000", "357123000")},
        ),
        (
            "PHONE_NUMBER",
            ("+234 800 555 0142", "00234 800 555 0142", "tel:+2348005550142"),
            {"kind": ("satellite",)},
        ),
    ),
    "COUNTER_TERRORISM": (
        ("PERSON", ("KARIMOV, Aziz",), {"role": ("facilitator",)}),
        ("PHONE_NUMBER", ("+44 20 7946 0958", "0044 20 7946 0958", "+44 (0)20 7946-0958"), {}),
        ("DOCUMENT", ("P4421907", "P 442-1907", "p4421907"), {"type": ("passport",)}),
    ),
    "MAJOR_EVENT_SECURITY": (
        ("DOMAIN", ("tickets-final-2026.example.net", "Tickets-Final-2026.EXAMPLE.net."), {}),
        ("ORGANISATION", ("Ultras Collective North",), {}),
        ("VEHICLE", ("AB-123-CD",), {"type": ("van",)}),
    ),
    "CYBERCRIME": (
        ("IP_ADDRESS", ("198.51.100.23", "198.51.100[.]23"), {"port": ("443",)}),
        (
            "IP_ADDRESS",
            ("2001:db8:4f::17", "2001:0DB8:004F:0000:0000:0000:0000:0017", "[2001:db8:4f::17]"),
            {"port": ("8443",)},
        ),
        ("DOMAIN", ("update-check.example.org", "update-check[.]example[.]org"), {}),
        (
            "CRYPTO_WALLET",
            (
                "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ",
                "bitcoin:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq?amount=0.25",
            ),
            {},
        ),
        (
            "EMAIL_ADDRESS",
            ("ops@lockbit-affiliate.example", "OPS@Lockbit-Affiliate.example"),
            {},
        ),
    ),
    "CHILD_SEXUAL_EXPLOITATION": (
        ("EMAIL_ADDRESS", ("trader42@mail.example", "mailto:Trader42@MAIL.example"), {}),
        ("DOMAIN", ("imgshare.example.io", "imgshare[.]example[.]io"), {}),
        ("FILE_HASH", ("sha256:" + "5e" * 32, "SHA-256:" + "5E" * 32, "5e" * 32), {}),
    ),
}

_TLP: Final = (("CLEAR", 10), ("GREEN", 40), ("AMBER", 30), ("AMBER_STRICT", 10), ("RED", 10))
_HANDLING: Final = (("H0", 40), ("H1", 30), ("H2", 20), ("H3", 10))
_OTHER_SHARE: Final = 0.04
_EXPIRED_SHARE: Final = 0.03
_SHARED_SHARE: Final = 0.35


@dataclass(frozen=True, slots=True, kw_only=True)
class Forgery:
    """A hostile record to write raw to ``writer``'s events topic."""

    kind: str
    writer: str
    event_id: str
    key: bytes
    value: bytes = field(repr=False)
    headers: list[tuple[str, bytes]] = field(repr=False)


class _TamperingSigner:
    """Claims ``key``'s id but signs other bytes: a well-formed signature that does not verify."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data + b"\x00")


class Traffic:
    """A seeded stream of realistic events from ``agencies``, and forgeries to mix in."""

    def __init__(self, agencies: Sequence[str], *, seed: int | None = None) -> None:
        if len(agencies) < 2:
            raise ValueError(f"agencies {list(agencies)}: the demo needs at least two")
        self.agencies = tuple(agencies)
        self._rng = random.Random(seed)
        self._cases: dict[tuple[str, str], int] = {}
        self._forgeries = 0
        self._stranger = SigningKey.generate()

    def event(self, origin: str, *, now: datetime | None = None) -> dict[str, Any]:
        """One event (in-memory form) that ``origin``'s systems publish."""
        rng = self._rng
        now = (now or datetime.now(UTC)).astimezone(UTC)
        area = "OTHER" if rng.random() < _OTHER_SHARE else rng.choice(AREAS)
        event = example(area, agency=origin, now=now, event_id=str(uuid.uuid4()))
        peers = [a for a in self.agencies if a != origin]
        roll = rng.random()
        if roll < 0.8:
            releasable = peers
        elif roll < 0.9:
            releasable = rng.sample(peers, max(1, len(peers) - 1))
        else:
            releasable = []
        codes = sorted({_weighted(rng, _HANDLING) for _ in range(rng.choice((1, 1, 2)))})
        case = self._cases[(origin, area)] = self._cases.get((origin, area), 0) + rng.choice((0, 1))
        event.update(
            tlp=_weighted(rng, _TLP),
            handling_codes=codes,
            handling_conditions="Not to be shared with private parties." if "H3" in codes else None,
            releasable_to=releasable,
            onward_release_consent=rng.random() < 0.3,
            source_reliability=rng.choice(("A", "B", "B", "C", "X")),
            info_accuracy=rng.choice(("ACCURACY_1", "ACCURACY_2", "ACCURACY_2", "ACCURACY_3")),
            priority=rng.choice(("LOW", "MEDIUM", "MEDIUM", "HIGH", "CRITICAL")),
            correlation_id=f"{origin}-{area.lower().replace('_', '-')}-{case:04d}",
            subjects=self._subjects(area, event["subjects"]),
        )
        event["origin"] = {**event["origin"], "originator_ref": f"REF-{rng.randrange(10**6):06d}"}
        if rng.random() < _EXPIRED_SHARE:
            # Created within the keys' validity (a day back), expired since: denied by expiry.
            event["created_at"] = now - timedelta(hours=2)
            event["occurred_at"] = now - timedelta(hours=3)
            event["expires_at"] = now - timedelta(hours=1)
        return event

    def _subjects(self, area: str, own: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The example's own identifiers are the same in every event of its area: made unique
        # here, so that events correlate only on the shared identifiers below.
        subjects = [
            dict(
                s,
                value=_UNIQUE[s["kind"]](self._rng) if s["kind"] in _UNIQUE else s["value"],
                attributes=dict(s["attributes"]),
            )
            for s in own
        ]
        if area in SHARED_IDENTIFIERS and self._rng.random() < _SHARED_SHARE:
            rng = self._rng
            kind, forms, attributes = rng.choice(SHARED_IDENTIFIERS[area])
            subjects.append(
                {
                    "kind": kind,
                    "value": rng.choice(forms),
                    "attributes": {name: rng.choice(f) for name, f in attributes.items()},
                }
            )
        return subjects

    def forgery(self, writer: str, key: SigningKey) -> Forgery:
        """The next hostile record (kinds in turn) written to ``writer``'s events topic;
        ``key`` is ``writer``'s own signing key."""
        kind = FORGERY_KINDS[self._forgeries % len(FORGERY_KINDS)]
        self._forgeries += 1
        peers = [a for a in self.agencies if a != writer]
        event = self.event(writer)
        event.update(tlp="GREEN", releasable_to=peers, expires_at=event["created_at"] + _DAY)
        if kind == "bad-signature":
            value = seal(event, _TamperingSigner(key))
        elif kind == "unknown-key":
            value = seal(event, self._stranger)
        elif kind == "spoofed-origin":
            # Claims to come from a peer, signed with the writer's own key.
            event["origin"] = {**event["origin"], "agency": self._rng.choice(peers)}
            value = seal(event, key)
        else:
            sealed = seal(event, key)
            title = event["title"].encode("utf-8")
            value = sealed.replace(title, title[:-1] + (b"X" if title[-1:] != b"X" else b"Y"), 1)
        return Forgery(
            kind=kind,
            writer=writer,
            event_id=event["event_id"],
            key=headers.event_key(event),
            value=value,
            headers=headers.event_headers(event),
        )


_DAY: Final = timedelta(days=1)
_BECH32: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

# A value no other event names, per subject kind that is an identifier.
_UNIQUE: Final[dict[str, Callable[[random.Random], str]]] = {
    "DOCUMENT": lambda rng: f"X{rng.randrange(10**9):09d}",
    "URL": lambda rng: f"https://forum.example.org/t/{rng.randrange(10**12)}",
    "IP_ADDRESS": lambda rng: str(ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(64))),
    "DOMAIN": lambda rng: f"c2-{rng.getrandbits(48):012x}.example.net",
    "CRYPTO_WALLET": lambda rng: "bc1q" + "".join(rng.choice(_BECH32) for _ in range(38)),
    "FILE_HASH": lambda rng: f"sha256:{rng.getrandbits(256):064x}",
    "EMAIL_ADDRESS": lambda rng: f"user{rng.randrange(10**12)}@example.com",
}


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]
