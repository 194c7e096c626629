"""The VersionStore contract: check-and-set writes, versions, destroy, custom metadata."""

from __future__ import annotations

import datetime

import pytest

from rotor.api import keys
from rotor.backends.protocols import (
    NotFound,
    VersionConflict,
)
from tests.contract.cases import CLOCK_SLACK, case, full_handle, versions_of
from tests.contract.subject import Subject


class VersionStoreContract:
    """VersionStore, as Vault's KV v2 behaves."""

    @case
    async def test_write_with_cas_0_creates_the_first_version(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = versions_of(s, "new")
        assert await handle.write_version({"password": "one"}, "0") == "1"
        assert await handle.read_version() == ({"password": "one"}, "1")
        assert await handle.write_version({"password": "two"}, "1") == "2"
        assert await handle.list_versions() == ["1", "2"]

    @case
    async def test_a_stale_or_early_cas_is_a_version_conflict(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        with pytest.raises(VersionConflict):
            await handle.write_version({"password": "early"}, "1")  # no version 1 yet
        s.put("db", {"password": "one"})
        s.put("db", {"password": "two"})
        for cas in ("0", "1", "3"):
            with pytest.raises(VersionConflict) as conflict:
                await handle.write_version({"password": "mine"}, cas)
            assert conflict.value.reason == keys.CONFLICT and "mine" not in str(conflict.value)
        assert await handle.read_version() == ({"password": "two"}, "2")

    @case
    async def test_read_latest_and_pinned_versions(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        s.put("db", {"password": "one"})
        s.put("db", {"password": "two", "user": "app"})
        assert await handle.read_version() == ({"password": "two", "user": "app"}, "2")
        assert await handle.read_version("1") == ({"password": "one"}, "1")
        with pytest.raises(NotFound):
            await handle.read_version("3")

    @case
    async def test_a_missing_secret_reads_as_nothing(self, backend_under_test: Subject) -> None:
        handle = versions_of(backend_under_test, "missing")
        assert await handle.read_version() == ({}, None)
        assert await handle.list_versions() == []
        assert await handle.custom_metadata() == {}
        assert await handle.version_created("1") is None
        await handle.destroy_versions(["1"])
        with pytest.raises(NotFound):
            await handle.read_version("1")

    @case
    async def test_destroyed_versions_are_gone_and_the_rest_stay(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        for n in range(1, 5):
            s.put("db", {"password": f"v{n}"})
        await handle.destroy_versions([])
        await handle.destroy_versions(["1", "3", "9"])  # 9 never existed: ignored
        assert await handle.list_versions() == ["2", "4"]
        for version in ("1", "3"):
            with pytest.raises(NotFound):
                await handle.read_version(version)
        assert await handle.read_version("2") == ({"password": "v2"}, "2")
        assert isinstance(await handle.version_created("1"), datetime.datetime)  # created_time outlives data

    @case
    async def test_a_destroyed_latest_version_reads_as_nothing_but_still_counts_for_cas(
            self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        s.put("db", {"password": "one"})
        s.put("db", {"password": "two"})
        await handle.destroy_versions(["2"])
        assert await handle.read_version() == ({}, None)
        with pytest.raises(NotFound):
            await s.backend.fetch(s.namespace, s.spec("db"))
        with pytest.raises(VersionConflict):
            await handle.write_version({"password": "three"}, "1")
        assert await handle.write_version({"password": "three"}, "2") == "3"
        assert await handle.list_versions() == ["1", "3"]

    @case
    async def test_versions_are_listed_oldest_first_and_the_newest_ten_kept(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        for n in range(1, 12):
            s.put("db", {"password": f"v{n}"})
        assert await handle.list_versions() == [str(n) for n in range(2, 12)]  # numeric order: "10" after "9"
        with pytest.raises(NotFound):
            await handle.read_version("1")

    @case
    async def test_custom_metadata_merges_and_an_empty_value_removes(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = versions_of(s, "db")
        s.put("db", {"password": "one"})
        await handle.set_custom_metadata({"lease-1": "a", "rotation": "r1"})
        await handle.set_custom_metadata({"lease-1": "", "lease-2": "b"})
        assert await handle.custom_metadata() == {"rotation": "r1", "lease-2": "b"}
        await handle.set_custom_metadata({"absent": ""})
        assert await handle.custom_metadata() == {"rotation": "r1", "lease-2": "b"}
        assert await handle.read_version() == ({"password": "one"}, "1")  # data untouched

    @case
    async def test_metadata_of_a_secret_without_versions_does_not_create_one(self, backend_under_test: Subject) -> None:
        handle = versions_of(backend_under_test, "meta-only")
        await handle.set_custom_metadata({"owner": "rotor"})
        assert await handle.custom_metadata() == {"owner": "rotor"}
        assert await handle.read_version() == ({}, None)
        assert await handle.list_versions() == []
        assert await handle.write_version({"password": "one"}, "0") == "1"

    @case
    async def test_version_created_is_a_time_by_the_backend_clock(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = full_handle(s, "db")
        version = s.put("db", {"password": "one"})
        created = await handle.version_created(version)
        assert isinstance(created, datetime.datetime) and created.utcoffset() == datetime.timedelta(0)
        assert abs(created - await handle.backend_time()) < CLOCK_SLACK
        assert await handle.version_created("7") is None
