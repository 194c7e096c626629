"""The VersionStore contract: check-and-set writes, versions, destroy, custom metadata.

Backend-neutral: a case names a version by what a write (or the subject's put) returned, and one never
written by unwritten(). What a store does differently by its nature is a class attribute
the runner sets (no default: a runner that forgets one fails); each case asserts either behaviour.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable
from typing import ClassVar

import pytest

from rotor.api import keys
from rotor.backends.protocols import (
    InvalidSpec,
    NotFound,
    VersionConflict,
)
from tests.contract.cases import CLOCK_SLACK, backend_clock, case, versions_of
from tests.contract.subject import StoreSubject


class VersionStoreContract:
    """VersionStore: as Vault's KV v2 and AWS Secrets Manager both behave, their differences named below."""

    # Versions are "1", "2", ... in the order written (Vault's KV v2). False: opaque ids (Secrets Manager's
    # VersionIds). Either way "0" is the check-and-set of a secret without versions.
    numbered_versions: ClassVar[bool]
    # How many of the newest versions written by others (the subject's put) stay listed and readable:
    # Vault's max_versions (10); Secrets Manager's two labelled AWSCURRENT and AWSPREVIOUS (versions Rotor
    # writes carry a label of their own and stay: tests/contract/staged.py).
    versions_kept: ClassVar[int]
    # The latest version can be destroyed, and the secret then reads as nothing (Vault). False: destroying
    # it is InvalidSpec and it stays (Secrets Manager: AWSCURRENT cannot lose its label).
    destroys_latest_version: ClassVar[bool]
    # Custom metadata can be set on a secret that has no version yet (Vault's metadata endpoint). False:
    # that is NotFound and creates nothing (Secrets Manager: tags belong to an existing secret).
    metadata_without_versions: ClassVar[bool]
    # The backend compares CAS and writes in one step (Vault's KV v2 cas): of writers racing with the same
    # CAS exactly one wins. False: the handle compares with the latest version just before it writes
    # (Secrets Manager has no check-and-set): only a writer that checks after another's write is refused.
    atomic_check_and_set: ClassVar[bool]

    def unwritten(self, s: StoreSubject, latest: str | None = None) -> str:
        """A version never written: numbered, the one after LATEST (an off-by-one shows); else absent_version."""
        return str(int(latest or "0") + 1) if self.numbered_versions else s.absent_version

    @case
    async def test_write_with_cas_0_creates_the_first_version(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = versions_of(s, "new")
        first = await handle.write_version({"password": "one"}, "0")
        assert await handle.read_version() == ({"password": "one"}, first)
        second = await handle.write_version({"password": "two"}, first)
        assert await handle.list_versions() == [first, second]
        assert await handle.read_version() == ({"password": "two"}, second)

    @case
    async def test_version_ids_are_numbered_or_opaque(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = versions_of(s, "new")
        first = await handle.write_version({"password": "one"}, "0")
        second = s.put("new", {"password": "two"})
        third = await handle.write_version({"password": "three"}, second)
        written = [first, second, third]
        if self.numbered_versions:
            assert written == ["1", "2", "3"]
        else:
            assert len(set(written)) == 3 and not any(v.isdigit() for v in written)
            assert s.absent_version not in written and not s.absent_version.isdigit()

    @case
    async def test_a_stale_or_early_cas_is_a_version_conflict(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        with pytest.raises(VersionConflict):  # no such version yet
            await handle.write_version({"password": "early"}, self.unwritten(s))
        first = s.put("db", {"password": "one"})
        second = s.put("db", {"password": "two"})
        for cas in ("0", first, self.unwritten(s, second)):
            with pytest.raises(VersionConflict) as conflict:
                await handle.write_version({"password": "mine"}, cas)
            assert conflict.value.reason == keys.CONFLICT and "mine" not in str(conflict.value)
        assert await handle.read_version() == ({"password": "two"}, second)

    @case
    async def test_of_writers_with_the_same_cas_one_wins(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        base = s.put("db", {"password": "base"})
        handles = [versions_of(s, "db") for _ in range(4)]
        if self.atomic_check_and_set:
            results = await asyncio.gather(*(h.write_version({"password": f"w{n}"}, base)
                                             for n, h in enumerate(handles)), return_exceptions=True)
        else:
            results = [await _outcome(h.write_version({"password": f"w{n}"}, base)) for n, h in enumerate(handles)]
        won = [(n, r) for n, r in enumerate(results) if isinstance(r, str)]
        assert len(won) == 1 and all(isinstance(r, VersionConflict) for r in results if not isinstance(r, str))
        [(n, version)] = won
        assert await handles[0].read_version() == ({"password": f"w{n}"}, version)

    @case
    async def test_read_latest_and_pinned_versions(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        first = s.put("db", {"password": "one"})
        second = s.put("db", {"password": "two", "user": "app"})
        assert await handle.read_version() == ({"password": "two", "user": "app"}, second)
        assert await handle.read_version(first) == ({"password": "one"}, first)
        with pytest.raises(NotFound):
            await handle.read_version(self.unwritten(s, second))

    @case
    async def test_a_missing_secret_reads_as_nothing(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = versions_of(s, "missing")
        assert await handle.read_version() == ({}, None)
        assert await handle.list_versions() == []
        assert await handle.custom_metadata() == {}
        never = self.unwritten(s)
        assert await handle.version_created(never) is None
        await handle.destroy_versions([never])
        with pytest.raises(NotFound):
            await handle.read_version(never)

    @case
    async def test_destroyed_versions_are_gone_and_the_rest_stay(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        versions = [s.put("db", {"password": f"v{n}"}) for n in range(1, 5)]
        await handle.destroy_versions([])
        destroyed = [versions[0], versions[2]]
        await handle.destroy_versions([*destroyed, self.unwritten(s, versions[-1])])  # never written: ignored
        kept = [v for v in versions[-self.versions_kept:] if v not in destroyed]
        assert await handle.list_versions() == kept
        for version in destroyed:
            with pytest.raises(NotFound):
                await handle.read_version(version)
        for version in kept:
            assert await handle.read_version(version) == ({"password": f"v{versions.index(version) + 1}"}, version)
        assert isinstance(await handle.version_created(versions[0]), datetime.datetime)  # its time outlives it

    @case
    async def test_destroying_the_latest_version(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        first = s.put("db", {"password": "one"})
        second = s.put("db", {"password": "two"})
        if not self.destroys_latest_version:
            with pytest.raises(InvalidSpec):
                await handle.destroy_versions([second])
            assert await handle.read_version() == ({"password": "two"}, second)
            assert (await s.backend.fetch(s.namespace, s.spec("db"))).version == second
            return
        # It reads as nothing, yet still counts for check-and-set.
        await handle.destroy_versions([second])
        assert await handle.read_version() == ({}, None)
        with pytest.raises(NotFound):
            await s.backend.fetch(s.namespace, s.spec("db"))
        with pytest.raises(VersionConflict):
            await handle.write_version({"password": "three"}, first)
        third = await handle.write_version({"password": "three"}, second)
        assert await handle.list_versions() == [first, third]
        if self.numbered_versions:
            assert third == "3"

    @case
    async def test_versions_are_listed_oldest_first_and_the_newest_kept(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        versions = [s.put("db", {"password": f"v{n}"}) for n in range(self.versions_kept + 1)]
        assert await handle.list_versions() == versions[1:]  # numbered: "10" after "9"
        with pytest.raises(NotFound):
            await handle.read_version(versions[0])

    @case
    async def test_custom_metadata_merges_and_an_empty_value_removes(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        version = s.put("db", {"password": "one"})
        await handle.set_custom_metadata({"lease-1": "a", "rotation": "r1"})
        await handle.set_custom_metadata({"lease-1": "", "lease-2": "b"})
        assert await handle.custom_metadata() == {"rotation": "r1", "lease-2": "b"}
        await handle.set_custom_metadata({"absent": ""})
        assert await handle.custom_metadata() == {"rotation": "r1", "lease-2": "b"}
        assert await handle.read_version() == ({"password": "one"}, version)  # data untouched

    @case
    async def test_metadata_of_a_secret_without_versions_creates_no_version(
            self, backend_under_test: StoreSubject) -> None:
        handle = versions_of(backend_under_test, "meta-only")
        if self.metadata_without_versions:
            await handle.set_custom_metadata({"owner": "rotor"})
            assert await handle.custom_metadata() == {"owner": "rotor"}
        else:
            with pytest.raises(NotFound):
                await handle.set_custom_metadata({"owner": "rotor"})
            assert await handle.custom_metadata() == {}
        assert await handle.read_version() == ({}, None)
        assert await handle.list_versions() == []
        first = await handle.write_version({"password": "one"}, "0")
        assert await handle.read_version() == ({"password": "one"}, first)
        if self.numbered_versions:
            assert first == "1"

    @case
    async def test_version_created_is_a_time_by_the_backend_clock(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        version = s.put("db", {"password": "one"})
        created = await handle.version_created(version)
        assert isinstance(created, datetime.datetime) and created.utcoffset() == datetime.timedelta(0)
        assert abs(created - await backend_clock(s, handle)) < CLOCK_SLACK
        assert await handle.version_created(self.unwritten(s, version)) is None


async def _outcome(write: Awaitable[str]) -> str | BaseException:
    try:
        return await write
    except VersionConflict as conflict:
        return conflict
