"""Shared by the contract cases: running an async case, handles with the capabilities a case needs."""

from __future__ import annotations

import asyncio
import datetime
import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from rotor.api.capabilities import Capability
from rotor.backends.protocols import (
    AuditTrail,
    KeyRing,
    LeaseIssuer,
    SecretHandle,
    StaticCredentials,
    VersionStore,
)
from tests.contract.subject import StoreSubject, Subject

# The protocol a bound handle implements for each capability its backend declares.
PROTOCOL = {Capability.WRITE_VERSION: VersionStore, Capability.VERSIONS: VersionStore,
            Capability.LEASES: LeaseIssuer, Capability.STATIC_CREDENTIALS: StaticCredentials,
            Capability.AUDIT_TRAIL: AuditTrail, Capability.KEY_VERSIONS: KeyRing}
AUDIT_ROW = {"time", "operation", "path", "serviceAccount", "role", "displayName", "remoteAddress", "denied"}
CLOCK_SLACK = datetime.timedelta(seconds=5)  # Vault's Date header has whole seconds; the stack is local

F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, None]])


def case(body: F) -> Callable[..., None]:
    """An async contract case as a plain pytest test, in an event loop of its own."""

    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(body(*args, **kwargs))

    return run


def versions_of(s: StoreSubject, name: str) -> VersionStore:
    handle = s.backend.bind(s.namespace, s.spec(name))
    assert isinstance(handle, VersionStore)
    return handle


def full_handle(s: Subject, name: str = "any") -> Any:
    """A handle with every capability (the backends under contract have them all)."""
    handle = s.backend.bind(s.namespace, s.spec(name))
    assert all(isinstance(handle, p) for p in (VersionStore, LeaseIssuer, StaticCredentials, AuditTrail))
    return handle


async def backend_clock(s: StoreSubject, handle: SecretHandle) -> datetime.datetime:
    """The backend's clock now: asked of the backend where it tells it (handles with leases or static
    credentials), else read without it (s.now())."""
    if s.backend.capabilities & {Capability.LEASES, Capability.STATIC_CREDENTIALS}:
        assert isinstance(handle, (LeaseIssuer, StaticCredentials))
        return await handle.backend_time()
    return s.now()
