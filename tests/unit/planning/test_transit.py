"""planning.transit: what status records of a Transit key, when a version is adopted, how the minimums rise."""

from __future__ import annotations

import pytest

from rotor.api.capabilities import Capability
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.planning.capabilities import missing, rotation_needs
from rotor.planning.rotation import validate
from rotor.planning.transit import (
    delivered_versions,
    delivers,
    delivery_data,
    holds,
    key_values,
    published,
    raised,
    version_of,
    versions_in,
)

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


EXPORTED = {**SPEC, "transit": {"key": "orders", "export": {"type": "encryption-key"}}}


def test_an_exported_key_is_delivered_and_needs_kv_writes_named_by_the_export_field() -> None:
    spec = RotationPolicySpec.model_validate(EXPORTED)
    assert delivers(spec)
    assert rotation_needs(spec) == {Capability.KEY_VERSIONS: "spec.transit", Capability.WRITE_VERSION:
                                    "spec.transit.export", Capability.VERSIONS: "spec.transit.export"}
    problem = missing(rotation_needs(spec), "vault", frozenset({Capability.KEY_VERSIONS}), "RotationPolicy")
    assert problem is not None and problem.startswith("spec.transit.export:")


def test_the_secret_holds_the_versions_still_in_use_the_newest_ten_at_most() -> None:
    assert delivered_versions(2, 1) == [1, 2]  # the overlap: old and new
    assert delivered_versions(2, 2) == [2]  # after Revoking
    assert delivered_versions(30, 1) == list(range(21, 31))
    assert delivered_versions(0, 0) == []


def test_delivery_data_replaces_the_delivered_versions_and_keeps_the_apps_own_properties() -> None:
    before = {"transitKey": "orders", "key-v1": "m1", "key-v2": "m2", "key-vlatest": "2", "key-version": "x"}
    after = delivery_data(before, "key-v", {2: "m2", 3: "m3"})
    assert after == {"transitKey": "orders", "key-version": "x", "key-v2": "m2", "key-v3": "m3", "key-vlatest": "3"}
    assert versions_in(after, "key-v") == [2, 3] and holds(after, "key-v", [2, 3])
    assert not holds(after, "key-v", [3]) and not holds(before, "key-v", [1, 2, 3])
    assert versions_in({"key-v01": "x", "key-vlatest": "1"}, "key-v") == []  # only numbers as Vault writes them


def test_status_values_of_an_exported_key_name_versions_never_material() -> None:
    values = key_values("transit", "orders", 2, 1, 0, [1, 2], "5")
    assert values == {"key": "transit/orders", "keyVersion": "2", "minDecryptionVersion": "1",
                      "minEncryptionVersion": "0", "deliveredVersions": "1,2", "version": "5"}
