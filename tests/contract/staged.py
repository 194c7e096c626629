"""The StagedVersions contract: a VersionStore whose versions carry staging labels (AWS Secrets Manager).

What the rotation strategies (engines/rotation/strategies/staged.py) and the incident steps rely on of such
a store, beyond the VersionStore contract (versions.py) it passes too. Versions are opaque ids: every case
names a version by what a write returned. Run against AWS on moto (tests/integration/aws/
test_aws_contract.py) with a StoreSubject, as `backend_under_test`.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable

import pytest

from rotor.api import keys
from rotor.backends.protocols import (
    Actor,
    InvalidSpec,
    NotFound,
    PermissionDenied,
    StagedVersions,
    Unavailable,
    VersionConflict,
)
from tests.contract.cases import case
from tests.contract.subject import StoreSubject


def staged(s: StoreSubject, name: str, actor: Actor | None = None) -> StagedVersions:
    handle = s.backend.bind(s.namespace, s.spec(name), actor)
    assert isinstance(handle, StagedVersions)
    return handle


class StagedVersionsContract:
    """StagedVersions; a runner subclasses it with ReadContract and VersionStoreContract."""

    @case
    async def test_nothing_is_staged_for_a_missing_secret(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = staged(s, "missing")
        assert await handle.staged_version("r1") is None
        with pytest.raises(NotFound):
            await handle.promote(s.absent_version)

    @case
    async def test_check_and_set_writes_compare_with_the_current_version(
            self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
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
    async def test_a_staged_version_is_pending_until_promoted(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
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
            await handle.promote(s.absent_version)

    @case
    async def test_destroy_retires_versions_but_never_the_current_one(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = staged(s, "db")
        versions = [s.put("db", {"password": f"v{n}"}) for n in range(3)]
        for n, key in enumerate(("r1", "r2")):
            await handle.promote(await handle.stage_version({"password": f"r{n}"}, key))
            versions.append(await handle.staged_version(key) or "")
        alive = await handle.list_versions()
        assert alive[-2:] == versions[-2:]  # oldest first: what each rotation published stays labelled
        await handle.destroy_versions([])
        await handle.destroy_versions([versions[-2], s.absent_version])  # one never written: ignored
        assert versions[-2] not in await handle.list_versions()
        with pytest.raises(NotFound):
            await handle.read_version(versions[-2])
        assert isinstance(await handle.version_created(versions[-2]), datetime.datetime)  # its time outlives it
        with pytest.raises(InvalidSpec):
            await handle.destroy_versions([versions[-1]])
        assert (await handle.read_version())[1] == versions[-1]

    @case
    async def test_promoting_an_older_version_moves_readers_back(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = staged(s, "db")
        old = s.put("db", {"password": "one"})
        new = await handle.stage_version({"password": "two"}, "r1")
        await handle.promote(new)
        await handle.promote(old)
        assert await handle.read_version() == ({"password": "one"}, old)
        await handle.destroy_versions([new])
        assert await handle.list_versions() == [old]

    @case
    async def test_an_identity_without_permission_may_not_stage_or_promote(
            self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        version = s.put("db", {"password": "kept-secret"})
        handle = staged(s, "db", s.denied)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: handle.stage_version({"p": "theirs"}, "r"), lambda: handle.staged_version("r"),
            lambda: handle.promote(version), lambda: handle.destroy_versions([version])]
        for call in calls:
            with pytest.raises(PermissionDenied):
                await call()
        assert await staged(s, "db").read_version() == ({"password": "kept-secret"}, version)

    @case
    async def test_an_unreachable_backend_stages_nothing(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
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
