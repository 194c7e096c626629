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
    StaticCredentials,
    VersionStore,
)
from tests.contract.subject import Subject

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


def versions_of(s: Subject, name: str) -> VersionStore:
    handle = s.backend.bind(s.namespace, s.spec(name))
    assert isinstance(handle, VersionStore)
    return handle


def full_handle(s: Subject, name: str = "any") -> Any:
    """A handle with every capability (the backends under contract have them all)."""
    handle = s.backend.bind(s.namespace, s.spec(name))
    assert all(isinstance(handle, p) for p in (VersionStore, LeaseIssuer, StaticCredentials, AuditTrail))
    return handle
