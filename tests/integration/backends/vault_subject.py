"""The real VaultBackend against the stack's Vault, as a contract Subject.

One namespace per test module (ServiceAccounts `app`, with a policy like a RotationPolicy identity's,
and `nobody`, whose role has no policy), the Transit engine, a dynamic and a static role of the stack's
database secrets engine over its PostgreSQL; each test gets fresh secret paths, Transit keys and a fresh
backend (no cached tokens).
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac

from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import Actor
from rotor.backends.vault import VaultBackend
from rotor.config import VaultConnection
from rotor.planning import times
from tests.contract.subject import MOUNT
from tests.devenv import Stack
from tests.devenv.process import free_port
from tests.integration.pki_setup import MOUNT as PKI
from tests.integration.pki_setup import create_role, enable_pki, pki_policy
from tests.integration.test_rotation import rotator_policy, superuser
from tests.integration.transit_setup import MOUNT as TRANSIT
from tests.integration.transit_setup import create_key, enable_transit, transit_policy

LEASE_TTL, LEASE_MAX_TTL = 60, 120


@dataclass(frozen=True)
class VaultWorld:
    """What the administrator set up once for a test module."""

    namespace: str
    lease_role: tuple[str, str, int, int]
    static_role: tuple[str, str, str]


def set_up(stack: Stack, vault: hvac.Client, core: Any, namespace: str) -> VaultWorld:
    for account in ("app", "nobody"):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    role = f"{namespace}-app"
    enable_transit(vault)
    enable_pki(vault)
    vault.sys.create_or_update_policy(name=role, policy=f"{rotator_policy(namespace)}\n{transit_policy(namespace)}\n"
                                      f"{pki_policy(namespace)}")
    vault.write(f"auth/kubernetes/role/{role}", bound_service_account_names=["app"],
                bound_service_account_namespaces=[namespace], policies=[role], audience="vault", ttl="1h")
    vault.write(f"auth/kubernetes/role/{namespace}-nobody", bound_service_account_names=["nobody"],
                bound_service_account_namespaces=[namespace], policies=[], audience="vault", ttl="1h")
    dynamic = f"{namespace}-dyn"
    vault.write(f"database/roles/{dynamic}", db_name="postgres", default_ttl=LEASE_TTL, max_ttl=LEASE_MAX_TTL,
                creation_statements=['CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' '
                                     "VALID UNTIL '{{expiration}}';"])
    user = f"u_{namespace.replace('-', '_')}_contract"
    with superuser(stack.info) as conn:
        conn.execute(f'CREATE ROLE "{user}" WITH LOGIN PASSWORD \'initial-{uuid.uuid4().hex}\'')
    static = f"{namespace}-static"
    vault.write(f"database/static-roles/{static}", db_name="postgres", username=user, rotation_period="24h")
    return VaultWorld(namespace, ("database", dynamic, LEASE_TTL, LEASE_MAX_TTL), ("database", static, user))


def tear_down(stack: Stack, world: VaultWorld) -> None:
    """Revoke every lease the tests left (their PostgreSQL roles go with them)."""
    _, role, _, _ = world.lease_role
    stack.vault_request("PUT", f"/v1/sys/leases/revoke-prefix/database/creds/{role}")


class VaultSubject:
    service_account = "app"
    absent_version = "9"  # the contract cases write fewer

    def __init__(self, stack: Stack, vault: hvac.Client, world: VaultWorld) -> None:
        self._stack, self._vault = stack, vault
        self.namespace = world.namespace
        self.lease_role, self.static_role = world.lease_role, world.static_role
        self.denied = Actor(service_account="nobody", role=f"{self.namespace}-nobody")
        self._prefix = uuid.uuid4().hex[:8]
        self._backends: list[VaultBackend] = []
        self.backend = self._new(audit=True, reachable=True)

    def _new(self, *, audit: bool, reachable: bool) -> VaultBackend:
        info = self._stack.info
        address = info.vault_addr if reachable else f"http://127.0.0.1:{free_port()}"
        connection = VaultConnection(address=address, rate_per_second=500, timeout_seconds=5,
                                     audit_log_file=Path(info.vault_audit_log) if audit else None)

        async def request_token(namespace: str, account: str, audience: str, seconds: int) -> tuple[str, Any]:
            token = await asyncio.to_thread(self._stack.service_account_token, namespace, account, audience, seconds)
            return token, None

        backend = VaultBackend({"default": connection}, request_token)
        self._backends.append(backend)
        return backend

    def close(self) -> None:
        for backend in self._backends:
            asyncio.run(backend.close())

    def path(self, name: str) -> str:
        return f"{self.namespace}/{self._prefix}/{name}"

    def where(self, name: str) -> str:
        return f"vault:default/{MOUNT}/{self.path(name)}"

    def spec(self, name: str, *, version: str | None = None, actor: Actor | None = None) -> SecretSourceSpec:
        actor = actor or Actor()
        return SecretSourceSpec.model_validate({
            "provider": "vault", "serviceAccountName": actor.service_account or self.service_account,
            "vault": {"path": self.path(name), "role": actor.role or f"{self.namespace}-app",
                      "version": int(version) if version else None}})

    def put(self, name: str, data: Mapping[str, str]) -> str:
        response = self._vault.secrets.kv.v2.create_or_update_secret(self.path(name), dict(data), mount_point=MOUNT)
        return str(response["data"]["version"])

    def transit_key(self, name: str, *, exportable: bool = False) -> tuple[str, str]:
        key = f"{self.namespace}-{self._prefix}-{name}"
        create_key(self._vault, key, exportable=exportable)
        return TRANSIT, key

    def pki_role(self, name: str) -> tuple[str, str, str]:
        role, domain = f"{self.namespace}-{self._prefix}-{name}", f"{name}-{self._prefix}.{self.namespace}.test"
        create_role(self._vault, role, domain)
        return PKI, role, domain

    def now(self) -> datetime.datetime:
        return times.now()

    async def elapse(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def unreachable(self) -> VaultBackend:
        return self.variant(reachable=False)

    def variant(self, *, audit: bool = True, reachable: bool = True) -> VaultBackend:
        return self._new(audit=audit, reachable=reachable)
