"""What the backend contract needs besides the backend: the set-up only an administrator can do.

Each backend under test comes with a small adapter: StoreSubject for the contracts every versioned or
readable store runs (reads.py, versions.py, staged.py: the fake, Vault, AWS Secrets Manager and SSM
Parameter Store), Subject for the Vault-shaped rest (leases, static roles, audit, Transit, PKI:
tests/contract/fake_subject.py for the in-memory fake, tests/integration/backends/vault_subject.py for the
real Vault). What differs between backends by their nature is a hook here (how a value is seeded, what a
version id looks like, what describe returns) or a capability attribute of the contract class.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Protocol

from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import Actor, Backend

MOUNT = "secret"  # the KV v2 mount every subject writes to


class StoreSubject(Protocol):
    """One backend under test, its test namespace, and how an administrator seeds its secrets."""

    backend: Backend
    namespace: str
    service_account: str  # the identity of spec(): may do everything the contract asks
    denied: Actor  # an identity that may log in (if the backend has logins) but do nothing
    absent_version: str  # a version id as the backend writes them, of no version ever written

    def where(self, name: str) -> str:
        """What backend.describe says of secret NAME (e.g. 'vault:default/secret/<path>')."""
        ...

    def spec(self, name: str, *, version: str | None = None, actor: Actor | None = None) -> SecretSourceSpec:
        """A SecretSource spec for secret NAME (pinned to VERSION, as put() returned it), read as ACTOR
        (default: service_account)."""
        ...

    def put(self, name: str, data: Mapping[str, str]) -> str:
        """Write a new latest version of secret NAME as the administrator (not through Rotor); its version."""
        ...

    def now(self) -> datetime.datetime:
        """The backend's clock now, read without the backend (the fake's clock; the wall clock)."""
        ...

    def unreachable(self) -> Backend:
        """The same backend configured for an address nothing answers."""
        ...


class Subject(StoreSubject, Protocol):
    """A Vault-shaped backend under test (KV v2 at MOUNT), and what an administrator set up for it."""

    lease_role: tuple[str, str, int, int]  # (mount, role, default TTL, max TTL) of a dynamic role
    static_role: tuple[str, str, str]  # (mount, role, username) of a static role

    def path(self, name: str) -> str:
        """The secret NAME of this test, inside MOUNT (unique per test)."""
        ...

    def transit_key(self, name: str, *, exportable: bool = False) -> tuple[str, str]:
        """A new Transit key NAME of this test (at version 1), made as the administrator; (mount, key).
        service_account may read, rotate, configure and export it; denied may not."""
        ...

    def pki_role(self, name: str) -> tuple[str, str, str]:
        """A new PKI role NAME of this test issuing for a domain and names under it, made as the
        administrator; (mount, role, domain). service_account may issue from it; denied may not."""
        ...

    async def elapse(self, seconds: float) -> None:
        """Let SECONDS pass on the backend's clock."""
        ...

    def variant(self, *, audit: bool = True, reachable: bool = True) -> Backend:
        """Another backend over the same store: without an audit trail, or one that cannot be reached."""
        ...
