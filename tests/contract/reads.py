"""The contract of Backend itself: describe, bind, declared capabilities, fetch, errors."""

from __future__ import annotations

from typing import Any

import pytest

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.backends.protocols import (
    Actor,
    Backend,
    NotFound,
    PermissionDenied,
    SecretHandle,
    Unavailable,
    VersionStore,
)
from tests.contract.cases import PROTOCOL, case, versions_of
from tests.contract.subject import MOUNT, Subject


class ReadContract:
    """Backend: describe, bind, capabilities, fetch; and the errors of an unreachable backend."""

    def test_describe_names_the_location_and_bound_handles_act_there(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        spec = s.spec("db")
        where = s.backend.describe(s.namespace, spec)
        assert where == f"{s.backend.provider}:default/{MOUNT}/{s.path('db')}"
        handle = s.backend.bind(s.namespace, spec)
        assert (handle.where, handle.actor) == (where, f"{s.namespace}/{s.service_account}")
        other = s.backend.bind(s.namespace, spec, Actor(service_account="rotator"))
        assert (other.where, other.actor) == (where, f"{s.namespace}/rotator")

    def test_declared_capabilities_are_implemented_by_bound_handles(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        assert isinstance(s.backend, Backend)
        assert Capability.READ in s.backend.capabilities
        handle = s.backend.bind(s.namespace, s.spec("db"))
        assert isinstance(handle, SecretHandle)
        for capability, protocol in PROTOCOL.items():
            if capability in s.backend.capabilities:
                assert isinstance(handle, protocol), f"{capability} declared, {protocol.__name__} missing"

    @case
    async def test_fetch_reads_the_latest_or_the_pinned_version_as_bytes(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        first = s.put("db", {"user": "app", "password": "one"})
        latest = s.put("db", {"user": "app", "password": "two"})
        fetched = await s.backend.fetch(s.namespace, s.spec("db"))
        assert (dict(fetched.values), fetched.version) == ({"user": b"app", "password": b"two"}, latest)
        pinned = await s.backend.fetch(s.namespace, s.spec("db", version=int(first)))
        assert (dict(pinned.values), pinned.version) == ({"user": b"app", "password": b"one"}, first)

    @case
    async def test_fetch_of_a_missing_secret_or_version_is_not_found(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        with pytest.raises(NotFound):
            await s.backend.fetch(s.namespace, s.spec("missing"))
        s.put("db", {"password": "one"})
        with pytest.raises(NotFound):
            await s.backend.fetch(s.namespace, s.spec("db", version=9))

    @case
    async def test_an_identity_without_permission_is_denied(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        s.put("db", {"password": "kept-secret"})
        with pytest.raises(PermissionDenied) as denied:
            await s.backend.fetch(s.namespace, s.spec("db", actor=s.denied))
        assert "kept-secret" not in str(denied.value)
        handle = s.backend.bind(s.namespace, s.spec("db"), s.denied)
        assert isinstance(handle, VersionStore)
        with pytest.raises(PermissionDenied):
            await handle.read_version()
        with pytest.raises(PermissionDenied):
            await handle.write_version({"password": "theirs"}, "1")
        with pytest.raises(PermissionDenied):
            await handle.list_versions()
        with pytest.raises(PermissionDenied):
            await handle.set_custom_metadata({"owner": "them"})
        assert await versions_of(s, "db").read_version() == ({"password": "kept-secret"}, "1")

    @case
    async def test_an_unreachable_backend_is_unavailable(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        s.put("db", {"password": "one"})
        down = s.variant(reachable=False)
        with pytest.raises(Unavailable) as failed:
            await down.fetch(s.namespace, s.spec("db"))
        assert failed.value.reason == keys.BACKEND_UNAVAILABLE
        handle: Any = down.bind(s.namespace, s.spec("db"))
        for call in (handle.read_version, handle.list_versions, handle.backend_time):
            with pytest.raises(Unavailable):
                await call()
