"""One Vault secret, acting as one identity: the capability protocols of rotor.backends.protocols.

Each method maps to one Vault endpoint (named in its docstring) and goes through the backend's rate
limits, concurrency bound and token cache (VaultBackend.call_as). Values pass through, never logged.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotor.backends.protocols import (
    ISSUE_GRACE_SECONDS,
    AuditLogUnreadable,
    AuditReads,
    InvalidSpec,
    Lease,
    NotFound,
    VersionConflict,
)
from rotor.backends.vault.keys import TransitKeys
from rotor.backends.vault.pki import VaultPki
from rotor.planning import times
from rotor.planning.vault_audit import Requests, audit_paths, audit_requests, reads_of

if TYPE_CHECKING:
    from rotor.backends.vault.backend import Identity, VaultBackend


class VaultSecret(TransitKeys, VaultPki):
    """A KV v2 secret at MOUNT/PATH of a connection, as IDENTITY (VersionStore, LeaseIssuer,
    StaticCredentials, AuditTrail; KeyRing from keys.py; CertificateIssuer from pki.py)."""

    def __init__(self, backend: VaultBackend, identity: Identity, mount: str, path: str,
                 audit_log: Path | None) -> None:
        self._backend, self._identity = backend, identity
        self.mount, self.path = mount, path
        self._audit_log = audit_log

    @property
    def where(self) -> str:
        return f"vault:{self._identity.connection}/{self.mount}/{self.path}"

    @property
    def actor(self) -> str:
        return f"{self._identity.namespace}/{self._identity.service_account}"

    def __repr__(self) -> str:
        return f"VaultSecret({self.where} as {self.actor})"

    async def _as(self, operation: str, fn: Callable[[Any], Any], where: str | None = None) -> Any:
        return await self._backend.call_as(self._identity, operation, fn,
                                           where=where if where is not None else f"{self.mount}/{self.path}")

    # -- VersionStore (KV v2) ---------------------------------------------------------------------

    async def read_version(self, version: str | None = None) -> tuple[dict[str, str], str | None]:
        """The data of VERSION (latest if None); ({}, None) when there is no latest version to read."""
        try:
            return await self.read_existing(version)
        except NotFound:
            if version is not None:
                raise
            return {}, None

    async def read_existing(self, version: str | None = None) -> tuple[dict[str, str], str]:
        """GET /v1/{mount}/data/{path}[?version=]: the data as strings, and its version. NotFound when the
        secret or that version does not exist, or is deleted or destroyed (Vault answers 404 to all)."""
        response = await self._as("read", lambda c: c.secrets.kv.v2.read_secret_version(
            path=self.path, mount_point=self.mount, version=int(version) if version else None,
            raise_on_deleted_version=True))
        data = {k: v if isinstance(v, str) else text(v) for k, v in (response["data"]["data"] or {}).items()}
        return data, str(response["data"]["metadata"]["version"])

    async def write_version(self, data: Mapping[str, str], cas: str) -> str:
        """POST /v1/{mount}/data/{path} with check-and-set; returns the new version."""
        try:
            response = await self._as("kv-write", lambda c: c.secrets.kv.v2.create_or_update_secret(
                path=self.path, secret=dict(data), cas=int(cas), mount_point=self.mount))
        except InvalidSpec as err:
            if "check-and-set" in err.message:
                raise VersionConflict(f"{self.mount}/{self.path} changed since version {cas}") from None
            raise
        return str(response["data"]["version"])

    async def metadata(self) -> dict[str, Any]:
        """GET /v1/{mount}/metadata/{path}: versions, custom metadata; NotFound when there is no secret."""
        response = await self._as("kv-metadata", lambda c: c.secrets.kv.v2.read_secret_metadata(
            path=self.path, mount_point=self.mount))
        return dict(response.get("data") or {})

    async def list_versions(self) -> list[str]:
        """GET /v1/{mount}/metadata/{path}: versions not yet destroyed, oldest first."""
        try:
            return [str(v) for v in alive_versions(await self.metadata())]
        except NotFound:
            return []

    async def destroy_versions(self, versions: Sequence[str]) -> None:
        """PUT /v1/{mount}/destroy/{path}: permanently removes the given versions."""
        if versions:
            numbers = [int(v) for v in versions]
            await self._as("kv-destroy", lambda c: c.secrets.kv.v2.destroy_secret_versions(
                path=self.path, versions=numbers, mount_point=self.mount))

    async def version_created(self, version: str) -> datetime.datetime | None:
        """GET /v1/{mount}/metadata/{path}: when VERSION was written (Vault's clock); None if it never was."""
        try:
            versions = (await self.metadata()).get("versions") or {}
        except NotFound:
            return None
        return times.parse_optional(str((versions.get(str(version)) or {}).get("created_time") or ""))

    async def custom_metadata(self) -> dict[str, str]:
        """GET /v1/{mount}/metadata/{path}: the secret's custom metadata."""
        try:
            return custom_of(await self.metadata())
        except NotFound:
            return {}

    async def set_custom_metadata(self, changes: Mapping[str, str]) -> None:
        """POST /v1/{mount}/metadata/{path}: merge CHANGES into the custom metadata ("" removes a key).
        Read, merge, write: Vault's atomic PATCH needs a `patch` capability rotator policies lack."""
        merged = {k: v for k, v in {**await self.custom_metadata(), **changes}.items() if v}
        await self._as("kv-metadata-write", lambda c: c.secrets.kv.v2.update_metadata(
            path=self.path, custom_metadata=merged, mount_point=self.mount))

    # -- LeaseIssuer (database and other dynamic engines) -------------------------------------------

    async def issue_lease(self, mount: str, role: str, *, grace: int = ISSUE_GRACE_SECONDS) -> Lease:
        """POST /v1/auth/token/create-orphan (a token of the lease's own, living GRACE seconds, with the
        identity's policies), then GET /v1/{mount}/creds/{role} with that token: new per-lease
        credentials that Vault revokes with the token unless hold_lease extends it. An orphan, so the
        lease does not die with the identity's login token either."""
        created = await self._as("lease-token", lambda c: c.auth.token.create_orphan(
            ttl=f"{grace}s", renewable=True, display_name="rotor-lease"), where="auth/token/create-orphan")
        holder = str(created["auth"]["client_token"])
        response = await self._as("dynamic-issue", lambda c: with_token(c, holder).adapter.get(
            f"/v1/{mount}/creds/{role}"), where=f"{mount}/creds/{role}")
        return Lease({k: str(v) for k, v in response["data"].items()}, str(response["lease_id"]),
                     int(response["lease_duration"]), bool(response.get("renewable", True)), holder)

    async def hold_lease(self, lease: Lease, seconds: int) -> int:
        """POST /v1/auth/token/renew-self with the lease's own token: it (and so the lease) lives SECONDS
        more, or as long as Vault's token max TTL allows."""
        if not lease.holder:
            raise InvalidSpec("this lease was not issued by issue_lease: it has no token of its own to hold")
        response = await self._as("lease-token-renew", lambda c: with_token(c, lease.holder).auth.token.renew_self(
            increment=seconds), where="auth/token/renew-self")
        return int(response["auth"]["lease_duration"])

    async def renew_lease(self, lease_id: str, increment: int | None = None) -> int:
        """PUT /v1/sys/leases/renew: extends the lease (never past the role's max TTL); its new TTL.
        NotFound once the lease is gone (revoked or expired)."""
        try:
            response = await self._as("lease-renew", lambda c: c.sys.renew_lease(lease_id=lease_id,
                                                                                  increment=increment),
                                      where="sys/leases/renew")
        except InvalidSpec as err:
            if "lease not found" in err.message or "invalid lease" in err.message:
                raise NotFound("Vault has no such lease to renew (revoked or expired)") from None
            raise
        return int(response["lease_duration"])

    async def lease_alive(self, lease_id: str) -> bool:
        """PUT /v1/sys/leases/lookup: whether the lease is still live."""
        try:
            await self._as("lease-lookup", lambda c: c.sys.read_lease(lease_id=lease_id), where="sys/leases/lookup")
        except (InvalidSpec, NotFound):
            return False  # Vault answers 400 "invalid lease" once a lease is gone
        return True

    async def revoke_lease(self, lease_id: str) -> None:
        """PUT /v1/sys/leases/revoke: the credentials stop working now (Vault accepts a lease already gone)."""
        await self._as("lease-revoke", lambda c: c.sys.revoke_lease(lease_id=lease_id), where="sys/leases/revoke")

    async def lease_role_ttl(self, mount: str, role: str) -> tuple[int, int]:
        """GET /v1/{mount}/roles/{role}: (default_ttl, max_ttl) in seconds."""
        response = await self._as("role-read", lambda c: c.adapter.get(f"/v1/{mount}/roles/{role}"),
                                  where=f"{mount}/roles/{role}")
        data = response["data"]
        return int(data.get("default_ttl") or 0), int(data.get("max_ttl") or 0)

    # -- StaticCredentials (database static roles) ----------------------------------------------------

    async def rotate_static(self, mount: str, role: str) -> None:
        """POST /v1/{mount}/rotate-role/{role}: the database gets a new password for the role's user."""
        await self._as("static-rotate", lambda c: c.adapter.post(f"/v1/{mount}/rotate-role/{role}"),
                       where=f"{mount}/rotate-role/{role}")

    async def _static(self, mount: str, role: str) -> dict[str, Any]:
        """GET /v1/{mount}/static-creds/{role}."""
        response = await self._as("static-creds", lambda c: c.adapter.get(f"/v1/{mount}/static-creds/{role}"),
                                  where=f"{mount}/static-creds/{role}")
        return dict(response["data"])

    async def static_credentials(self, mount: str, role: str) -> dict[str, str]:
        """GET /v1/{mount}/static-creds/{role}: the role's current username and password."""
        data = await self._static(mount, role)
        return {"username": str(data["username"]), "password": str(data["password"])}

    async def static_last_rotation(self, mount: str, role: str) -> datetime.datetime | None:
        """GET /v1/{mount}/static-creds/{role}: when Vault last set the role's password."""
        return times.parse_optional(str((await self._static(mount, role)).get("last_vault_rotation") or ""))

    async def backend_time(self) -> datetime.datetime:
        """The Date header of GET /v1/sys/health: Vault's clock, to compare with Vault's own times.
        Unauthenticated: it works for any identity."""
        return await self._backend.server_time(self._identity.connection)

    # -- AuditTrail (the connection's file audit device) ------------------------------------------------

    async def audit_reads(self, start: datetime.datetime, end: datetime.datetime | None,
                          limit: int = 100) -> AuditReads | None:
        """Reads of this secret in the file audit log configured for the connection."""
        return await self.audit_requests(reads_of(audit_paths(self.mount, self.path)), start, end, limit)

    async def audit_requests(self, requests: Requests, start: datetime.datetime, end: datetime.datetime | None,
                             limit: int = 100) -> AuditReads | None:
        """REQUESTS (any path of this connection's Vault) in the file audit log configured for the
        connection (values in it are HMACed by Vault, and none is copied anyway). Read by the operator,
        not asked of Vault: it works whoever the identity is, and while Vault is down."""
        if self._audit_log is None:
            return None
        log = self._audit_log

        def scan() -> tuple[list[dict[str, Any]], int]:
            with log.open(encoding="utf-8", errors="replace") as handle:
                return audit_requests(handle, requests=requests, start=start, end=end, limit=limit)

        try:
            reads, total = await asyncio.to_thread(scan)
        except OSError as err:
            raise AuditLogUnreadable(f"cannot read the Vault audit log {log}: {err.strerror}") from None
        return AuditReads(reads, total, str(log))


def alive_versions(metadata: Mapping[str, Any]) -> list[int]:
    """The versions of a KV v2 metadata response not yet destroyed, oldest first."""
    return sorted(int(v) for v, meta in (metadata.get("versions") or {}).items() if not meta.get("destroyed"))


def custom_of(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The custom metadata of a KV v2 metadata response (empty values count as absent)."""
    return {k: str(v) for k, v in (metadata.get("custom_metadata") or {}).items() if v}


def with_token(client: Any, token: str) -> Any:
    """CLIENT (made for this one request) acting with TOKEN instead of the identity's."""
    client.token = token
    return client


def text(value: Any) -> str:
    """A KV value as text: strings as they are, anything else (numbers, objects) as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
