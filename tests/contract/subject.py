"""What the backend contract needs besides the backend: the set-up only an administrator can do.

Each backend under test comes with a small Subject adapter (tests/contract/fake_subject.py for the
in-memory fake, tests/integration/backends/vault_subject.py for the real Vault); the contract cases in
tests/contract/backend.py use nothing else.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Protocol

from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import Actor, Backend

MOUNT = "secret"  # the KV v2 mount every subject writes to


class Subject(Protocol):
    """One backend under test, its test namespace, and what an administrator set up for it."""

    backend: Backend
    namespace: str
    service_account: str  # the identity of spec(): may do everything the contract asks
    denied: Actor  # an identity that may log in (if the backend has logins) but do nothing
    lease_role: tuple[str, str, int, int]  # (mount, role, default TTL, max TTL) of a dynamic role
    static_role: tuple[str, str, str]  # (mount, role, username) of a static role

    def path(self, name: str) -> str:
        """The secret NAME of this test, inside MOUNT (unique per test)."""
        ...

    def spec(self, name: str, *, version: int | None = None, actor: Actor | None = None) -> SecretSourceSpec:
        """A SecretSource spec for secret NAME, read as ACTOR (default: service_account)."""
        ...

    def put(self, name: str, data: Mapping[str, str]) -> str:
        """Write a version of secret NAME as the administrator; its version."""
        ...

    def transit_key(self, name: str, *, exportable: bool = False) -> tuple[str, str]:
        """A new Transit key NAME of this test (at version 1), made as the administrator; (mount, key).
        service_account may read, rotate, configure and export it; denied may not."""
        ...

    def pki_role(self, name: str) -> tuple[str, str, str]:
        """A new PKI role NAME of this test issuing for a domain and names under it, made as the
        administrator; (mount, role, domain). service_account may issue from it; denied may not."""
        ...

    def now(self) -> datetime.datetime:
        """The backend's clock now, read without the backend (the fake's clock; the wall clock)."""
        ...

    async def elapse(self, seconds: float) -> None:
        """Let SECONDS pass on the backend's clock."""
        ...

    def variant(self, *, audit: bool = True, reachable: bool = True) -> Backend:
        """Another backend over the same store: without an audit trail, or one that cannot be reached."""
        ...
