"""The in-memory FakeBackend as a contract Subject (runs in the unit suite, in milliseconds)."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping

from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import Actor, Backend
from tests.contract.subject import MOUNT
from tests.fakes.backend import FakeBackend


class FakeSubject:
    service_account = "app"
    absent_version = "9"  # the contract cases write fewer

    def __init__(self) -> None:
        self.backend: FakeBackend = FakeBackend()
        self.namespace = f"t-{uuid.uuid4().hex[:10]}"
        self.denied = Actor(service_account="nobody")
        self.backend.denied.add(f"{self.namespace}/nobody")
        self.lease_role = ("database", f"{self.namespace}-dyn", 60, 120)
        mount, role, ttl, max_ttl = self.lease_role
        self.backend.add_lease_role(mount, role, ttl, max_ttl)
        self.static_role = ("database", f"{self.namespace}-static", "u_static")
        self.backend.add_static_role(*self.static_role)

    def path(self, name: str) -> str:
        return f"{self.namespace}/{name}"

    def where(self, name: str) -> str:
        return f"vault:default/{MOUNT}/{self.path(name)}"

    def spec(self, name: str, *, version: str | None = None, actor: Actor | None = None) -> SecretSourceSpec:
        actor = actor or Actor()
        return SecretSourceSpec.model_validate({
            "provider": "vault", "serviceAccountName": actor.service_account or self.service_account,
            "vault": {"path": self.path(name), "role": actor.role or f"{self.namespace}-app",
                      "version": int(version) if version else None}})

    def put(self, name: str, data: Mapping[str, str]) -> str:
        return self.backend.put(MOUNT, self.path(name), data)

    def transit_key(self, name: str, *, exportable: bool = False) -> tuple[str, str]:
        key = f"{self.namespace}-{name}"
        self.backend.add_transit_key("transit", key).exportable = exportable
        return "transit", key

    def pki_role(self, name: str) -> tuple[str, str, str]:
        role, domain = f"{self.namespace}-{name}", f"{name}.{self.namespace}.test"
        self.backend.add_pki_role("pki", role, domain)
        return "pki", role, domain

    def now(self) -> datetime.datetime:
        return self.backend.clock()

    async def elapse(self, seconds: float) -> None:
        self.backend.clock.advance(seconds)

    def unreachable(self) -> Backend:
        return self.variant(reachable=False)

    def variant(self, *, audit: bool = True, reachable: bool = True) -> Backend:
        other = FakeBackend(clock=self.backend.clock)
        other.secrets, other.leases, other.roles = self.backend.secrets, self.backend.leases, self.backend.roles
        other.static_roles, other.audit = self.backend.static_roles, self.backend.audit
        other.holders, other.transit_keys = self.backend.holders, self.backend.transit_keys
        other.pki_roles, other.revoked_serials = self.backend.pki_roles, self.backend.revoked_serials
        other.audit_trail, other.down = audit, not reachable
        return other
