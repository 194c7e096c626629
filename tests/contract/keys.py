"""The KeyRing contract: a named key (Vault Transit) rotated in place, its minimum versions raised."""

from __future__ import annotations

import pytest

from rotor.backends.protocols import InvalidSpec, KeyRing, KeyVersions, NotFound, PermissionDenied
from tests.contract.cases import case
from tests.contract.subject import Subject


def key_ring(s: Subject, *, denied: bool = False) -> KeyRing:
    handle = s.backend.bind(s.namespace, s.spec("any", actor=s.denied if denied else None))
    assert isinstance(handle, KeyRing)
    return handle


class KeyRingContract:
    """KeyRing, as Vault's Transit engine behaves."""

    @case
    async def test_a_key_rotates_and_its_minimums_rise_without_touching_later_versions(
            self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, key = s.transit_key("orders")
        handle = key_ring(s)
        assert await handle.key_versions(mount, key) == KeyVersions(latest=1, min_decryption=1, min_encryption=0)
        assert await handle.rotate_key(mount, key) == 2
        assert await handle.key_versions(mount, key) == KeyVersions(2, 1, 0)
        await handle.set_min_versions(mount, key, decryption=2, encryption=2)
        assert await handle.key_versions(mount, key) == KeyVersions(2, 2, 2)
        await handle.set_min_versions(mount, key, decryption=2, encryption=2)  # again: no change, no error
        assert await handle.rotate_key(mount, key) == 3
        assert await handle.key_versions(mount, key) == KeyVersions(3, 2, 2)

    @case
    async def test_minimums_past_the_latest_or_out_of_order_are_refused(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, key = s.transit_key("signing")
        handle = key_ring(s)
        await handle.rotate_key(mount, key)
        with pytest.raises(InvalidSpec):
            await handle.set_min_versions(mount, key, decryption=3, encryption=0)
        with pytest.raises(InvalidSpec):
            await handle.set_min_versions(mount, key, decryption=1, encryption=3)
        with pytest.raises(InvalidSpec):
            await handle.set_min_versions(mount, key, decryption=2, encryption=1)
        assert await handle.key_versions(mount, key) == KeyVersions(2, 1, 0)  # nothing changed

    @case
    async def test_an_unknown_key_is_not_found(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, key = s.transit_key("exists")
        handle = key_ring(s)
        with pytest.raises(NotFound):
            await handle.key_versions(mount, f"{key}-missing")
        with pytest.raises(NotFound):
            await handle.rotate_key(mount, f"{key}-missing")

    @case
    async def test_an_identity_without_permission_is_denied(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, key = s.transit_key("guarded")
        with pytest.raises(PermissionDenied):
            await key_ring(s, denied=True).rotate_key(mount, key)
        assert (await key_ring(s).key_versions(mount, key)).latest == 1

    @case
    async def test_an_exportable_key_exports_each_version_in_use_and_only_those(
            self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, key = s.transit_key("exported", exportable=True)
        handle = key_ring(s)
        first = await handle.export_key(mount, key, "encryption-key", 1)
        assert first and first == await handle.export_key(mount, key, "encryption-key", 1)  # the same material
        await handle.rotate_key(mount, key)
        second = await handle.export_key(mount, key, "encryption-key", 2)
        assert second and second != first
        versions = await handle.key_versions(mount, key)
        assert versions.latest_created is not None  # when version 2 was made, by the backend's clock
        await handle.set_min_versions(mount, key, decryption=2, encryption=2)
        with pytest.raises(InvalidSpec):  # retired: below the minimum decryption version
            await handle.export_key(mount, key, "encryption-key", 1)
        with pytest.raises(InvalidSpec):  # not made yet
            await handle.export_key(mount, key, "encryption-key", 3)

    @case
    async def test_a_key_that_is_not_exportable_is_refused(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, key = s.transit_key("sealed")
        with pytest.raises(InvalidSpec):
            await key_ring(s).export_key(mount, key, "encryption-key", 1)
        with pytest.raises(NotFound):
            await key_ring(s).export_key(mount, f"{key}-missing", "encryption-key", 1)
