"""Policy files: the example loads, and every mistake is an error naming the file and entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.errors import ConfigError, PolicyError
from bus.policy import CRIME_AREAS, HANDLING_CODES, load_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "local.toml"

HEADER = 'agencies = ["interpol", "europol", "fbi"]\n'
GOOD = """
[[direction]]
from = "interpol"
to = "europol"
crime_areas = ["CYBERCRIME"]
tlp = ["GREEN"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_policy_loads() -> None:
    """deploy/policy/local.toml: interpol<->europol, the five areas, CLEAR/GREEN/AMBER."""
    policy = load_policy(EXAMPLE)
    assert policy.agencies == {"interpol", "europol"}
    assert set(policy.directions) == {("interpol", "europol"), ("europol", "interpol")}
    for direction in policy.directions.values():
        assert direction.crime_areas == CRIME_AREAS - {"OTHER"}
        assert direction.tlp == {"CLEAR", "GREEN", "AMBER"}
        assert direction.handling_codes == HANDLING_CODES
        assert direction.onward_forwarding is False


def test_defaults_of_a_minimal_direction(tmp_path: Path) -> None:
    """Without handling, onward_forwarding or release_h3: every code accepted, no onward
    forwarding, and H3 not released by machine."""
    policy = load_policy(_write(tmp_path, HEADER + GOOD))
    direction = policy.direction("interpol", "europol")
    assert direction is not None
    assert direction.handling_codes == HANDLING_CODES
    assert direction.onward_forwarding is False
    assert direction.release_h3 is False
    assert policy.direction("europol", "interpol") is None


@pytest.mark.parametrize("value", [True, False])
def test_release_h3_is_read_per_direction(tmp_path: Path, value: bool) -> None:
    text = HEADER + GOOD + f"release_h3 = {str(value).lower()}\n"
    direction = load_policy(_write(tmp_path, text)).direction("interpol", "europol")
    assert direction is not None
    assert direction.release_h3 is value


def test_policy_without_directions_denies_everything(tmp_path: Path) -> None:
    """A file with agencies only is valid: default deny in every direction."""
    assert load_policy(_write(tmp_path, HEADER)).directions == {}


# (what is wrong, file text, expected message part after the file name)
ERRORS: list[tuple[str, str, str]] = [
    (
        "release_h3 not a boolean",
        HEADER + GOOD + 'release_h3 = "yes"\n',
        "[[direction]] #1 (interpol->europol): 'release_h3' must be true or false",
    ),
    (
        "unknown crime area",
        HEADER + GOOD.replace('["CYBERCRIME"]', '["PIRACY"]'),
        "[[direction]] #1 (interpol->europol): unknown crime area 'PIRACY'; expected one of "
        "CHILD_SEXUAL_EXPLOITATION, COUNTER_TERRORISM",
    ),
    (
        "unknown TLP",
        HEADER + GOOD.replace('["GREEN"]', '["WHITE"]'),
        "[[direction]] #1 (interpol->europol): unknown TLP level 'WHITE'",
    ),
    (
        "RED listed",
        HEADER + GOOD.replace('["GREEN"]', '["GREEN", "RED"]'),
        "[[direction]] #1 (interpol->europol): contradiction: tlp lists RED",
    ),
    (
        "AMBER_STRICT listed",
        HEADER + GOOD.replace('["GREEN"]', '["AMBER_STRICT"]'),
        "contradiction: tlp lists AMBER_STRICT",
    ),
    (
        "unknown agency in to",
        HEADER + GOOD.replace('to = "europol"', 'to = "nsa"'),
        "[[direction]] #1 (interpol->nsa): unknown agency 'nsa' in 'to'; expected one of "
        "europol, fbi, interpol",
    ),
    (
        "unknown agency in from",
        HEADER + GOOD.replace('from = "interpol"', 'from = "Interpol"'),
        "unknown agency 'Interpol' in 'from'",
    ),
    (
        "from equals to",
        HEADER + GOOD.replace('to = "europol"', 'to = "interpol"'),
        "[[direction]] #1 (interpol->interpol): contradiction: 'from' and 'to' are the same",
    ),
    (
        "duplicated direction",
        HEADER + GOOD + GOOD,
        "[[direction]] #2 (interpol->europol): duplicates an earlier entry",
    ),
    (
        "unknown key in a direction",
        HEADER + GOOD + "onward = true\n",
        "[[direction]] #1 (interpol->europol): unknown key 'onward'; expected one of",
    ),
    (
        "unknown top-level key",
        HEADER + "default = 'allow'\n" + GOOD,
        "top level: unknown key 'default'",
    ),
    (
        "unknown key in handling",
        HEADER + GOOD + 'handling = { deny = ["H3"] }\n',
        "[[direction]] #1 (interpol->europol): handling: unknown key 'deny'",
    ),
    (
        "unknown handling code",
        HEADER + GOOD + 'handling = { allowed = ["H0", "H4"] }\n',
        "handling: unknown handling code 'H4'; expected one of H0, H1, H2, H3",
    ),
    (
        "onward_forwarding not a boolean",
        HEADER + GOOD + 'onward_forwarding = "yes"\n',
        "'onward_forwarding' must be true or false",
    ),
    (
        "missing crime_areas",
        HEADER + GOOD.replace('crime_areas = ["CYBERCRIME"]\n', ""),
        "[[direction]] #1 (interpol->europol): missing 'crime_areas'",
    ),
    (
        "missing to",
        HEADER + GOOD.replace('to = "europol"\n', ""),
        "[[direction]] #1: missing 'to'",
    ),
    (
        "empty tlp list",
        HEADER + GOOD.replace('["GREEN"]', "[]"),
        "'tlp' is empty, so this direction would release nothing",
    ),
    (
        "area listed twice",
        HEADER + GOOD.replace('["CYBERCRIME"]', '["CYBERCRIME", "CYBERCRIME"]'),
        "crime_areas: 'CYBERCRIME' is listed twice",
    ),
    ("missing agencies", GOOD, "missing 'agencies'"),
    ("agency listed twice", 'agencies = ["interpol", "interpol"]\n', "'interpol' is listed twice"),
    ("agency id not lowercase", 'agencies = ["Europol"]\n', "'Europol' is not an agency id"),
    ("unsupported version", "version = 2\n" + HEADER, "version 2 is not supported"),
    ("direction not an array", HEADER + "[direction]\nfrom = 'interpol'\n", "array of tables"),
    ("not TOML", HEADER + "[[direction]\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), [pytest.param(t, m, id=d) for d, t, m in ERRORS])
def test_invalid_policy_names_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake is a PolicyError (a ConfigError) that names the file and the entry."""
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert isinstance(info.value, ConfigError)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_later_entries_are_numbered(tmp_path: Path) -> None:
    """The entry number counts [[direction]] tables from 1, in file order."""
    second = GOOD.replace('"interpol"', '"fbi"').replace('["CYBERCRIME"]', '["PIRACY"]')
    with pytest.raises(PolicyError, match=r"\[\[direction\]\] #2 \(fbi->europol\)"):
        load_policy(_write(tmp_path, HEADER + GOOD + second))


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is a PolicyError naming it."""
    path = tmp_path / "absent.toml"
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(path)


def test_not_utf8(tmp_path: Path) -> None:
    """A binary file is a PolicyError, not a UnicodeDecodeError."""
    path = tmp_path / "policy.toml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(path)
