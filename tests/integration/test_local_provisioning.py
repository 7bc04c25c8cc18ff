"""``bus local up`` leaves keys, a trust store and a release policy that later commands use."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from bus.config import load_config
from bus.envelope import open_, seal
from bus.events import template
from bus.policy import load_policy
from bus.signing import SigningKey
from bus.testing import Federation
from bus.trust import TrustStore

pytestmark = pytest.mark.integration


def test_up_configures_a_key_trust_store_and_policy_that_load(federation: Federation) -> None:
    if federation.spec is None:
        pytest.skip("external clusters: no local configuration file is written")
    assert federation.config.agency("interpol").signing_key is not None
    config = load_config(federation.spec.config_file)
    assert config == federation.config
    for agency in federation.spec.agencies:
        settings = config.agency(agency)
        assert settings.signing_key is not None
        assert settings.trust_store is not None
        key = SigningKey.load(settings.signing_key)
        trusted = TrustStore.load(settings.trust_store).get(key.key_id)
        assert trusted.agency == agency
        trusted.check(agency, datetime.now(UTC) - timedelta(hours=1))
    assert config.policy_file is not None
    policy = load_policy(config.policy_file)
    assert set(policy.directions) == set(itertools.permutations(federation.spec.agencies, 2))


def test_an_event_signed_with_the_provided_key_verifies_with_the_provided_store(
    federation: Federation,
) -> None:
    """Even one created just before the key was made: local keys are valid from a day back."""
    if federation.spec is None:
        pytest.skip("external clusters: no local keys are made")
    settings = federation.config.agency("europol")
    assert settings.signing_key is not None
    assert settings.trust_store is not None
    event = template("CYBERCRIME", agency="europol", now=datetime.now(UTC) - timedelta(hours=2))
    value = seal(event, SigningKey.load(settings.signing_key))
    verified = open_(value, TrustStore.load(settings.trust_store))
    assert verified.agency == "europol"
