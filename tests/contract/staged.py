"""The StagedVersions contract: a VersionStore whose versions carry staging labels (AWS Secrets Manager).

What the rotation strategies (engines/rotation/strategies/staged.py) and the incident steps rely on of such
a store. Versions are opaque ids (the VersionStore contract's numbered versions are Vault's KV v2): every
case names a version by what a write returned. Run against AWS on moto (tests/integration/aws/
test_aws_contract.py) with a StagedSubject.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Protocol

import pytest

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import (
    Actor,
    Backend,
    InvalidSpec,
    NotFound,
    PermissionDenied,
    SecretHandle,
    StagedVersions,
    Unavailable,
    VersionConflict,
)
from tests.contract.cases import CLOCK_SLACK, PROTOCOL, case


class StagedSubject(Protocol):
    """One staged backend under test (a smaller Subject: no leases, roles, keys or certificates)."""

    backend: Backend
    namespace: str
    service_account: str
    denied: Actor  # may log in, but do nothing

    def spec(self, name: str, *, actor: Actor | None = None) -> SecretSourceSpec: ...

    def put(self, name: str, data: Mapping[str, str]) -> str:
        """A new current version of secret NAME, written as the administrator; its version."""
        ...

    def unreachable(self) -> Backend:
        """The same backend configured for an address nothing answers."""
        ...


def staged(s: StagedSubject, name: str, actor: Actor | None = None) -> StagedVersions:
    handle = s.backend.bind(s.namespace, s.spec(name), actor)
    assert isinstance(handle, StagedVersions)
    return handle


class StagedVersionsContract:
    def test_declared_capabilities_are_implemented_by_bound_handles(self, staged_under_test: StagedSubject) -> None:
        s = staged_under_test
        assert isinstance(s.backend, Backend) and Capability.READ in s.backend.capabilities
        handle = s.backend.bind(s.namespace, s.spec("db"))
        assert isinstance(handle, SecretHandle) and handle.actor == f"{s.namespace}/{s.service_account}"
        for capability, protocol in PROTOCOL.items():
            if capability in s.backend.capabilities:
                assert isinstance(handle, protocol), f"{capability} declared, {protocol.__name__} missing"

    @case
    async def test_a_missing_secret_reads_as_nothing(self, staged_under_test: StagedSubject) -> None:
        handle = staged(staged_under_test, "missing")
        assert await handle.read_version() == ({}, None)
        assert await handle.list_versions() == []
        assert await handle.custom_metadata() == {}
        assert await handle.staged_version("r1") is None
        await handle.destroy_versions(["0" * 36])
        with pytest.raises(NotFound):
            await handle.read_version("0" * 36)
        assert await handle.version_created("0" * 36) is None

    @case
    async def test_check_and_set_writes_compare_with_the_current_version(
            self, staged_under_test: StagedSubject) -> None:
        s = staged_under_test
        handle = staged(s, "db")
        first = await handle.write_version({"password": "one"}, "0")
        assert await handle.read_version() == ({"password": "one"}, first)
        second = s.put("db", {"password": "two"})
        for cas in ("0", first, "1"):
            with pytest.raises(VersionConflict) as conflict:
                await handle.write_version({"password": "mine"}, cas)
            assert conflict.value.reason == keys.CONFLICT and "mine" not in str(conflict.value)
        third = await handle.write_version({"password": "three"}, second)
        assert await handle.read_version() == ({"password": "three"}, third)
        # first: no longer labelled (AWSPREVIOUS moved on), and written by no rotation that keeps it.
        assert await handle.list_versions() == [second, third]

    @case
    async def test_a_staged_version_is_pending_until_promoted(self, staged_under_test: StagedSubject) -> None:
        s = staged_under_test
        handle = staged(s, "db")
        old = s.put("db", {"password": "one", "user": "app"})
        new = await handle.stage_version({"password": "two", "user": "app"}, "rotation-1")
        assert new != old and await handle.staged_version("rotation-1") == new
        assert await handle.read_version() == ({"password": "one", "user": "app"}, old)  # readers: still the old
        assert (await s.backend.fetch(s.namespace, s.spec("db"))).version == old
        assert await handle.read_version(new) == ({"password": "two", "user": "app"}, new)
        assert await handle.stage_version({"password": "other"}, "rotation-1") == new  # same key: nothing new
        await handle.promote(new)
        await handle.promote(new)  # a no-op once current
        fetched = await s.backend.fetch(s.namespace, s.spec("db"))
        assert (dict(fetched.values), fetched.version) == ({"password": b"two", "user": b"app"}, new)
        assert await handle.read_version(old) == ({"password": "one", "user": "app"}, old)  # still readable
        assert await handle.list_versions() == [old, new]
        with pytest.raises(NotFound):
            await handle.promote("0" * 36)

    @case
    async def test_destroy_retires_versions_but_never_the_current_one(self, staged_under_test: StagedSubject) -> None:
        s = staged_under_test
        handle = staged(s, "db")
        versions = [s.put("db", {"password": f"v{n}"}) for n in range(3)]
        for n, key in enumerate(("r1", "r2")):
            await handle.promote(await handle.stage_version({"password": f"r{n}"}, key))
            versions.append(await handle.staged_version(key) or "")
        alive = await handle.list_versions()
        assert alive[-2:] == versions[-2:]  # oldest first: what each rotation published stays labelled
        await handle.destroy_versions([])
        await handle.destroy_versions([versions[-2], "0" * 36])  # one never written: ignored
        assert versions[-2] not in await handle.list_versions()
        with pytest.raises(NotFound):
            await handle.read_version(versions[-2])
        assert isinstance(await handle.version_created(versions[-2]), datetime.datetime)  # its time outlives it
        with pytest.raises(InvalidSpec):
            await handle.destroy_versions([versions[-1]])
        assert (await handle.read_version())[1] == versions[-1]

    @case
    async def test_promoting_an_older_version_moves_readers_back(self, staged_under_test: StagedSubject) -> None:
        s = staged_under_test
        handle = staged(s, "db")
        old = s.put("db", {"password": "one"})
        new = await handle.stage_version({"password": "two"}, "r1")
        await handle.promote(new)
        await handle.promote(old)
        assert await handle.read_version() == ({"password": "one"}, old)
        await handle.destroy_versions([new])
        assert await handle.list_versions() == [old]

    @case
    async def test_version_created_is_a_time_by_the_backend_clock(self, staged_under_test: StagedSubject) -> None:
        s = staged_under_test
        version = s.put("db", {"password": "one"})
        created = await staged(s, "db").version_created(version)
        assert isinstance(created, datetime.datetime) and created.utcoffset() == datetime.timedelta(0)
        assert abs(created - datetime.datetime.now(datetime.UTC)) < CLOCK_SLACK

    @case
    async def test_custom_metadata_merges_and_an_empty_value_removes(self, staged_under_test: StagedSubject) -> None:
        s = staged_under_test
        version = s.put("db", {"password": "one"})
        handle = staged(s, "db")
        await handle.set_custom_metadata({"lease-1": "a", "rotation": "r1"})
        await handle.set_custom_metadata({"lease-1": "", "lease-2": "b"})
        assert await handle.custom_metadata() == {"rotation": "r1", "lease-2": "b"}
        assert await handle.read_version() == ({"password": "one"}, version)  # data untouched

    @case
    async def test_an_identity_without_permission_is_denied(self, staged_under_test: StagedSubject) -> None:
        s = staged_under_test
        version = s.put("db", {"password": "kept-secret"})
        with pytest.raises(PermissionDenied) as denied:
            await s.backend.fetch(s.namespace, s.spec("db", actor=s.denied))
        assert "kept-secret" not in str(denied.value)
        handle = staged(s, "db", s.denied)
        for call in (handle.read_version, handle.list_versions, lambda: handle.stage_version({"p": "theirs"}, "r"),
                     lambda: handle.write_version({"p": "theirs"}, version), lambda: handle.promote(version),
                     lambda: handle.set_custom_metadata({"owner": "them"})):
            with pytest.raises(PermissionDenied):
                await call()
        assert await staged(s, "db").read_version() == ({"password": "kept-secret"}, version)

    @case
    async def test_an_unreachable_backend_is_unavailable(self, staged_under_test: StagedSubject) -> None:
        s = staged_under_test
        s.put("db", {"password": "one"})
        down = s.unreachable()
        with pytest.raises(Unavailable) as failed:
            await down.fetch(s.namespace, s.spec("db"))
        assert failed.value.reason == keys.BACKEND_UNAVAILABLE
        handle = down.bind(s.namespace, s.spec("db"))
        assert isinstance(handle, StagedVersions)
        for call in (handle.read_version, handle.list_versions, lambda: handle.staged_version("r1")):
            with pytest.raises(Unavailable):
                await call()
