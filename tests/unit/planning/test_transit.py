"""planning.transit: what status records of a Transit key, when a version is adopted, how the minimums rise."""

from __future__ import annotations

import pytest

from rotor.api.capabilities import Capability
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.planning.capabilities import missing, rotation_needs
from rotor.planning.rotation import validate
from rotor.planning.transit import delivers, key_values, published, raised, version_of

SPEC = {"secretSourceRef": {"name": "orders"}, "strategy": "transit", "transit": {"key": "orders"},
        "schedule": {"interval": "720h"}}


def test_a_transit_key_needs_only_key_versions_and_is_not_delivered() -> None:
    spec = RotationPolicySpec.model_validate(SPEC)
    assert rotation_needs(spec) == {Capability.KEY_VERSIONS: "spec.transit"}
    assert not delivers(spec) and validate(spec) is None
    message = missing(rotation_needs(spec), "aws", frozenset({Capability.READ}), "RotationPolicy")
    assert message is not None and message.startswith("spec.transit: ")
    assert delivers(RotationPolicySpec.model_validate({**SPEC, "strategy": "overlap"}))


def test_strategy_transit_without_spec_transit_is_named() -> None:
    spec = RotationPolicySpec.model_validate({k: v for k, v in SPEC.items() if k != "transit"})
    assert validate(spec) == "strategy transit needs spec.transit.key"


def test_status_holds_numbers_and_the_key_name_only() -> None:
    values = key_values("transit", "orders", 3, 2, 0)
    assert values == {"key": "transit/orders", "keyVersion": "3", "minDecryptionVersion": "2",
                      "minEncryptionVersion": "0"}
    assert version_of(values) == 3 and version_of({}) == 0 and version_of({"keyVersion": "dry-run"}) == 0


@pytest.mark.parametrize(("latest", "adopt"), [(4, False), (5, True), (7, True)])
def test_any_version_after_the_recorded_one_is_adopted(latest: int, adopt: bool) -> None:
    assert published({"keyVersion": "4"}, latest) is adopt


@pytest.mark.parametrize(("current", "new", "expected"), [
    ((1, 0), 2, (2, 2)),  # the usual: both minimums to the new version
    ((2, 2), 2, None),  # done before a crash: nothing to do
    ((3, 0), 2, (3, 3)),  # an administrator is ahead: the decryption minimum stays, encryption follows it
    ((3, 1), 2, (3, 3)),  # (Vault refuses an encryption floor under the decryption one)
    ((3, 3), 2, None),
    ((1, 5), 3, (3, 5)),  # never lowered
])
def test_minimums_only_rise(current: tuple[int, int], new: int, expected: tuple[int, int] | None) -> None:
    assert raised(*current, new) == expected
