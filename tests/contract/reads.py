"""The contract of Backend itself: describe, bind, declared capabilities, fetch, errors.

Backend-neutral: versions are what put() returned, locations what the subject's where() says. What a
backend's kind of source cannot do by its nature is a class attribute the runner sets (no default: a
runner that forgets one fails), and the cases assert the other behaviour for it instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

import pytest

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.backends.protocols import (
    Actor,
    Backend,
    LeaseIssuer,
    NotFound,
    PermissionDenied,
    SecretHandle,
    StaticCredentials,
    Unavailable,
    VersionStore,
)
from tests.contract.cases import PROTOCOL, case, versions_of
from tests.contract.subject import StoreSubject


class ReadContract:
    """Backend: describe, bind, capabilities, fetch; and the errors of an unreachable backend."""

    # Bound handles are VersionStores (Vault's KV v2, Secrets Manager). False: a read-only kind of source
    # (SSM Parameter Store) of a backend that declares versions for its other kinds: its handles are plain
    # SecretHandles, and engines check the handle (isinstance) before they write.
    versioned_handles: ClassVar[bool]
    # A secret holds exactly one property, named "password" (an SSM parameter, named by its last segment):
    # cases seed that one alone. False: a secret is a map of properties.
    single_property: ClassVar[bool]

    def seeded(self, password: str) -> dict[str, str]:
        """A value with the property `password` (and `user`, where a secret holds more than one)."""
        return {"password": password} if self.single_property else {"user": "app", "password": password}

    def test_describe_names_the_location_and_bound_handles_act_there(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        spec = s.spec("db")
        where = s.backend.describe(s.namespace, spec)
        assert where == s.where("db") and where.startswith(f"{s.backend.provider}:")
        handle = s.backend.bind(s.namespace, spec)
        assert (handle.where, handle.actor) == (where, f"{s.namespace}/{s.service_account}")
        other = s.backend.bind(s.namespace, spec, Actor(service_account="rotator"))
        assert (other.where, other.actor) == (where, f"{s.namespace}/rotator")

    def test_declared_capabilities_are_implemented_by_bound_handles(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        assert isinstance(s.backend, Backend)
        assert Capability.READ in s.backend.capabilities
        handle = s.backend.bind(s.namespace, s.spec("db"))
        assert isinstance(handle, SecretHandle)
        for capability, protocol in PROTOCOL.items():
            if capability not in s.backend.capabilities:
                continue
            if protocol is VersionStore and not self.versioned_handles:
                assert not isinstance(handle, VersionStore), f"{capability}: a read-only source offers no writes"
            else:
                assert isinstance(handle, protocol), f"{capability} declared, {protocol.__name__} missing"

    @case
    async def test_fetch_reads_the_latest_or_the_pinned_version_as_bytes(
            self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        first = s.put("db", self.seeded("one"))
        latest = s.put("db", self.seeded("two"))
        assert first != latest
        fetched = await s.backend.fetch(s.namespace, s.spec("db"))
        as_bytes = {k: v.encode() for k, v in self.seeded("two").items()}
        assert (dict(fetched.values), fetched.version) == (as_bytes, latest)
        pinned = await s.backend.fetch(s.namespace, s.spec("db", version=first))
        as_bytes = {k: v.encode() for k, v in self.seeded("one").items()}
        assert (dict(pinned.values), pinned.version) == (as_bytes, first)

    @case
    async def test_fetch_of_a_missing_secret_or_version_is_not_found(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        with pytest.raises(NotFound):
            await s.backend.fetch(s.namespace, s.spec("missing"))
        s.put("db", {"password": "one"})
        with pytest.raises(NotFound):
            await s.backend.fetch(s.namespace, s.spec("db", version=s.absent_version))

    @case
    async def test_an_identity_without_permission_is_denied(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        version = s.put("db", {"password": "kept-secret"})
        with pytest.raises(PermissionDenied) as denied:
            await s.backend.fetch(s.namespace, s.spec("db", actor=s.denied))
        assert "kept-secret" not in str(denied.value)
        assert (await s.backend.fetch(s.namespace, s.spec("db"))).values == {"password": b"kept-secret"}
        if not self.versioned_handles:
            return  # nothing else to be denied: the handle has no calls (test_declared_capabilities...)
        handle = s.backend.bind(s.namespace, s.spec("db"), s.denied)
        assert isinstance(handle, VersionStore)
        with pytest.raises(PermissionDenied):
            await handle.read_version()
        with pytest.raises(PermissionDenied):
            await handle.write_version({"password": "theirs"}, version)
        with pytest.raises(PermissionDenied):
            await handle.list_versions()
        with pytest.raises(PermissionDenied):
            await handle.set_custom_metadata({"owner": "them"})
        assert await versions_of(s, "db").read_version() == ({"password": "kept-secret"}, version)

    @case
    async def test_an_unreachable_backend_is_unavailable(self, backend_under_test: StoreSubject) -> None:
        s = backend_under_test
        s.put("db", {"password": "one"})
        down = s.unreachable()
        with pytest.raises(Unavailable) as failed:
            await down.fetch(s.namespace, s.spec("db"))
        assert failed.value.reason == keys.BACKEND_UNAVAILABLE
        handle = down.bind(s.namespace, s.spec("db"))
        calls: list[Callable[[], Awaitable[object]]] = []
        if self.versioned_handles:
            assert isinstance(handle, VersionStore)
            calls += [handle.read_version, handle.list_versions]
        if s.backend.capabilities & {Capability.LEASES, Capability.STATIC_CREDENTIALS}:  # they have its clock
            assert isinstance(handle, (LeaseIssuer, StaticCredentials))
            calls.append(handle.backend_time)
        for call in calls:
            with pytest.raises(Unavailable):
                await call()
