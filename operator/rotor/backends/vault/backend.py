"""Vault / OpenBao KV backend: logs in as the SecretSource's ServiceAccount, reads KV v1 or v2.

The only module that imports hvac. hvac is synchronous, so calls run in a thread; per connection
a semaphore bounds concurrency and a token bucket bounds the rate, so an operator restart with
thousands of sources does not stampede the server. Vault tokens are cached per identity until
shortly before they expire; identical concurrent reads by the same identity collapse into one.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import hvac
import hvac.exceptions
import requests
import requests.adapters

from rotor.api.capabilities import Capability
from rotor.api.secretsource import SecretSourceSpec, VaultSource
from rotor.backends.protocols import (
    Actor,
    BackendError,
    InvalidSpec,
    NotFound,
    PermissionDenied,
    Unavailable,
    VersionConflict,
)
from rotor.backends.vault.handle import VaultSecret
from rotor.concurrency import SingleFlight, TokenBucket
from rotor.config import VaultConnection
from rotor.observability.metrics import (
    BACKEND_REQUESTS,
    BACKEND_SECONDS,
    BACKEND_UP,
    COLLAPSED_READS,
    LOGINS,
    TOKEN_CACHE_HITS,
)
from rotor.observability.secrecy import remember
from rotor.planning.sync import Fetched

T = TypeVar("T")
# (namespace, service account, audience, seconds) -> (jwt, expiry); supplied by rotor.kube.
TokenRequester = Callable[[str, str, str, int], Awaitable[tuple[str, Any]]]

TOKEN_RENEW_MARGIN = 0.2  # log in again once 80% of a Vault token's TTL has passed
JWT_SECONDS = 600  # the shortest TokenRequest lifetime the API server grants


@dataclass(frozen=True)
class Identity:
    connection: str
    namespace: str
    service_account: str
    role: str
    auth_mount: str
    audience: str


@dataclass
class _CachedToken:
    token: str
    renew_at: float


class _Connection:
    def __init__(self, name: str, settings: VaultConnection) -> None:
        self.name = name
        self.settings = settings
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=settings.max_concurrency)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.limit = asyncio.Semaphore(settings.max_concurrency)
        self.bucket = TokenBucket(settings.rate_per_second)
        self.kv_versions: dict[str, str] = {}

    def client(self, token: str | None = None) -> hvac.Client:
        verify: str | bool = str(self.settings.ca_file) if self.settings.ca_file else True
        return hvac.Client(url=self.settings.address.rstrip("/"), token=token, verify=verify,
                           timeout=self.settings.timeout_seconds, session=self.session,
                           namespace=self.settings.namespace)


class VaultBackend:
    provider: ClassVar[str] = "vault"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(self, connections: dict[str, VaultConnection], request_token: TokenRequester) -> None:
        self._connections = {name: _Connection(name, c) for name, c in connections.items()}
        self._request_token = request_token
        self._tokens: dict[Identity, _CachedToken] = {}
        self._logins: SingleFlight[str] = SingleFlight()
        self._reads: SingleFlight[Fetched] = SingleFlight()

    def describe(self, namespace: str, spec: SecretSourceSpec) -> str:
        source = _vault(spec)
        return f"vault:{source.connection}/{source.mount}/{source.path}"

    async def close(self) -> None:
        for connection in self._connections.values():
            connection.session.close()

    # -- public ---------------------------------------------------------------------------------

    async def fetch(self, namespace: str, spec: SecretSourceSpec) -> Fetched:
        source = _vault(spec)
        conn = self._connection(source.connection)
        identity = Identity(source.connection, namespace, spec.service_account_name, source.role,
                            source.auth_mount, source.audience)
        key = (identity, source.mount, source.path, source.kv_version, source.version)
        result, shared = await self._reads.do(key, lambda: self._fetch(conn, identity, source))
        if shared:
            COLLAPSED_READS.labels(conn.name).inc()
        return result

    def bind(self, namespace: str, spec: SecretSourceSpec, actor: Actor | None = None) -> VaultSecret:
        """The source's KV secret, acting as ACTOR's ServiceAccount and Vault role (default: the source's)."""
        source = _vault(spec)
        conn = self._connection(source.connection)
        actor = actor or Actor()
        identity = Identity(source.connection, namespace, actor.service_account or spec.service_account_name,
                            actor.role or source.role, source.auth_mount, source.audience)
        return VaultSecret(self, identity, source.mount, source.path, conn.settings.audit_log_file)

    async def server_time(self, connection: str) -> datetime.datetime:
        """Vault's clock: the Date header of GET /v1/sys/health (unauthenticated)."""
        conn = self._connection(connection)

        def health(client: hvac.Client) -> str:
            response = client.adapter.get("/v1/sys/health", raise_exception=False)
            return str(response.headers.get("Date") or "")

        date = await self._call(conn, "health", health)
        try:
            return email.utils.parsedate_to_datetime(date).astimezone(datetime.UTC)
        except (TypeError, ValueError):
            raise Unavailable(f"Vault connection {conn.name!r} sent no usable Date header") from None

    def forget_token(self, identity: Identity) -> None:
        self._tokens.pop(identity, None)

    # -- rotation: writes, as the rotation identity -------------------------------------------
    # Each maps to one Vault endpoint (named in the docstring). Values pass through, never logged.

    async def kv_write(self, identity: Identity, mount: str, path: str, data: dict[str, str],
                       cas: int | None) -> str:
        """POST /v1/{mount}/data/{path} with check-and-set; returns the new version."""
        try:
            response = await self.call_as(identity, "kv-write", lambda c: c.secrets.kv.v2.create_or_update_secret(
                path=path, secret=data, cas=cas, mount_point=mount), where=f"{mount}/{path}")
        except InvalidSpec as err:
            if "check-and-set" in err.message:
                raise VersionConflict(f"{mount}/{path} changed since version {cas}") from None
            raise
        return str(response["data"]["version"])

    async def kv_read(self, identity: Identity, mount: str, path: str,
                      version: int | None = None) -> tuple[dict[str, str], str]:
        """GET /v1/{mount}/data/{path}: the data as strings, and its version."""
        response = await self.call_as(identity, "read", lambda c: c.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, version=version, raise_on_deleted_version=True), where=f"{mount}/{path}")
        data = {k: v if isinstance(v, str) else _to_bytes(v).decode() for k, v in response["data"]["data"].items()}
        return data, str(response["data"]["metadata"]["version"])

    async def kv_versions(self, identity: Identity, mount: str, path: str) -> list[int]:
        """GET /v1/{mount}/metadata/{path}: versions not yet destroyed, oldest first."""
        response = await self.call_as(identity, "kv-metadata", lambda c: c.secrets.kv.v2.read_secret_metadata(
            path=path, mount_point=mount), where=f"{mount}/{path}")
        versions = response["data"]["versions"]
        return sorted(int(v) for v, meta in versions.items() if not meta.get("destroyed"))

    async def kv_custom_metadata(self, identity: Identity, mount: str, path: str) -> dict[str, str]:
        """GET /v1/{mount}/metadata/{path}: the secret's custom metadata (Rotor keeps lease ids there)."""
        response = await self.call_as(identity, "kv-metadata", lambda c: c.secrets.kv.v2.read_secret_metadata(
            path=path, mount_point=mount), where=f"{mount}/{path}")
        return {k: str(v) for k, v in (response["data"].get("custom_metadata") or {}).items() if v}

    async def kv_set_custom_metadata(self, identity: Identity, mount: str, path: str,
                                     changes: dict[str, str]) -> None:
        """POST /v1/{mount}/metadata/{path}: merge CHANGES into the custom metadata ("" removes a key)."""
        merged = {**await self.kv_custom_metadata(identity, mount, path), **changes}
        merged = {k: v for k, v in merged.items() if v}
        await self.call_as(identity, "kv-metadata-write", lambda c: c.secrets.kv.v2.update_metadata(
            path=path, custom_metadata=merged or {}, mount_point=mount), where=f"{mount}/{path}")

    async def kv_destroy(self, identity: Identity, mount: str, path: str, versions: list[int]) -> None:
        """PUT /v1/{mount}/destroy/{path}: permanently removes the given versions."""
        if versions:
            await self.call_as(identity, "kv-destroy", lambda c: c.secrets.kv.v2.destroy_secret_versions(
                path=path, versions=versions, mount_point=mount), where=f"{mount}/{path}")

    async def static_rotate(self, identity: Identity, mount: str, role: str) -> None:
        """POST /v1/{mount}/rotate-role/{role}: the database gets a new password for the role's user."""
        await self.call_as(identity, "static-rotate", lambda c: c.adapter.post(f"/v1/{mount}/rotate-role/{role}"),
                       where=f"{mount}/rotate-role/{role}")

    async def static_creds(self, identity: Identity, mount: str, role: str) -> dict[str, str]:
        """GET /v1/{mount}/static-creds/{role}: the role's current username and password."""
        data = await self._static(identity, mount, role)
        return {"username": str(data["username"]), "password": str(data["password"])}

    async def static_last_rotation(self, identity: Identity, mount: str, role: str) -> str:
        """GET /v1/{mount}/static-creds/{role}: when Vault last set the role's password (RFC 3339)."""
        return str((await self._static(identity, mount, role)).get("last_vault_rotation") or "")

    async def _static(self, identity: Identity, mount: str, role: str) -> dict[str, Any]:
        response = await self.call_as(identity, "static-creds", lambda c: c.adapter.get(
            f"/v1/{mount}/static-creds/{role}"), where=f"{mount}/static-creds/{role}")
        return dict(response["data"])

    async def dynamic_issue(self, identity: Identity, mount: str, role: str) -> tuple[dict[str, str], str, int]:
        """GET /v1/{mount}/creds/{role}: new per-lease credentials, the lease id and its TTL."""
        response = await self.call_as(identity, "dynamic-issue", lambda c: c.adapter.get(f"/v1/{mount}/creds/{role}"),
                                  where=f"{mount}/creds/{role}")
        data = {k: str(v) for k, v in response["data"].items()}
        return data, str(response["lease_id"]), int(response["lease_duration"])

    async def lease_renew(self, identity: Identity, lease_id: str, increment: int | None = None) -> int:
        """PUT /v1/sys/leases/renew: extends the lease; returns its new TTL."""
        response = await self.call_as(identity, "lease-renew", lambda c: c.sys.renew_lease(
            lease_id=lease_id, increment=increment))
        return int(response["lease_duration"])

    async def lease_exists(self, identity: Identity, lease_id: str) -> bool:
        """PUT /v1/sys/leases/lookup: whether the lease is still live."""
        try:
            await self.call_as(identity, "lease-lookup", lambda c: c.sys.read_lease(lease_id=lease_id))
        except (InvalidSpec, NotFound):
            return False  # Vault answers 400 "invalid lease" once a lease is gone
        return True

    async def lease_revoke(self, identity: Identity, lease_id: str) -> None:
        """PUT /v1/sys/leases/revoke: the credentials stop working now."""
        await self.call_as(identity, "lease-revoke", lambda c: c.sys.revoke_lease(lease_id=lease_id))

    async def role_ttl(self, identity: Identity, mount: str, role: str) -> tuple[int, int]:
        """GET /v1/{mount}/roles/{role}: (default_ttl, max_ttl) in seconds."""
        response = await self.call_as(identity, "role-read", lambda c: c.adapter.get(f"/v1/{mount}/roles/{role}"),
                                  where=f"{mount}/roles/{role}")
        return int(response["data"].get("default_ttl") or 0), int(response["data"].get("max_ttl") or 0)

    async def call_as(self, identity: Identity, operation: str, fn: Callable[[hvac.Client], T], *,
                      where: str = "") -> T:
        """One request as IDENTITY (logged in, token cached); a refused cached token gets one fresh login."""
        conn = self._connection(identity.connection)
        for attempt in (1, 2):
            token = await self._token(conn, identity)
            try:
                return await self._call(conn, operation, fn, token=token, where=where)
            except PermissionDenied:
                if attempt == 2:
                    raise
                self.forget_token(identity)
        raise AssertionError("unreachable")

    # -- internals ------------------------------------------------------------------------------

    def _connection(self, name: str) -> _Connection:
        try:
            return self._connections[name]
        except KeyError:
            known = ", ".join(sorted(self._connections)) or "none configured"
            raise InvalidSpec(f"spec.vault.connection {name!r} is not a backend connection of this operator "
                              f"(known: {known}); ask the platform team or fix the name") from None

    async def _fetch(self, conn: _Connection, identity: Identity, source: VaultSource) -> Fetched:
        for attempt in (1, 2):
            token = await self._token(conn, identity)
            try:
                return await self._read(conn, token, source)
            except PermissionDenied:
                # A cached token may have been revoked; one fresh login tells the two cases apart.
                if attempt == 2 or identity not in self._tokens:
                    raise
                self.forget_token(identity)
        raise AssertionError("unreachable")

    async def _token(self, conn: _Connection, identity: Identity) -> str:
        cached = self._tokens.get(identity)
        if cached is not None and time.monotonic() < cached.renew_at:
            TOKEN_CACHE_HITS.labels(conn.name).inc()
            return cached.token
        token, _ = await self._logins.do(identity, lambda: self._login(conn, identity))
        return token

    async def _login(self, conn: _Connection, identity: Identity) -> str:
        jwt, _ = await self._request_token(identity.namespace, identity.service_account, identity.audience,
                                           JWT_SECONDS)
        try:
            response = await self._call(conn, "login", lambda c: c.auth.kubernetes.login(
                role=identity.role, jwt=jwt, use_token=False, mount_point=identity.auth_mount))
        except BackendError as err:
            LOGINS.labels(conn.name, err.reason).inc()
            who = f"{identity.namespace}/{identity.service_account}"
            if isinstance(err, (PermissionDenied, InvalidSpec, NotFound)):
                raise PermissionDenied(f"Vault login as ServiceAccount {who} with role {identity.role!r} at "
                                       f"auth/{identity.auth_mount} was refused: {err.message}") from None
            raise
        LOGINS.labels(conn.name, "ok").inc()
        auth = response["auth"]
        ttl = float(auth.get("lease_duration") or 0) or 300.0
        token = str(auth["client_token"])
        self._tokens[identity] = _CachedToken(token, time.monotonic() + ttl * (1 - TOKEN_RENEW_MARGIN))
        return token

    async def _kv_version(self, conn: _Connection, token: str, source: VaultSource) -> str:
        if source.kv_version != "auto":
            return source.kv_version
        known = conn.kv_versions.get(source.mount)
        if known:
            return known
        info = await self._call(conn, "mount-info", lambda c: c.adapter.get(
            f"/v1/sys/internal/ui/mounts/{source.mount}"), token=token)
        data = info.get("data") or {}
        if data.get("type") not in ("kv", "generic"):
            raise InvalidSpec(f"spec.vault.mount {source.mount!r} is not a KV secrets engine")
        version = str((data.get("options") or {}).get("version") or "1")
        conn.kv_versions[source.mount] = version
        return version

    async def _read(self, conn: _Connection, token: str, source: VaultSource) -> Fetched:
        version = await self._kv_version(conn, token, source)
        where = f"{source.mount}/{source.path}"
        if version == "2":
            response = await self._call(conn, "read", lambda c: c.secrets.kv.v2.read_secret_version(
                path=source.path, mount_point=source.mount, version=source.version,
                raise_on_deleted_version=True), token=token, where=where)
            data = response["data"]["data"] or {}
            found = str(response["data"]["metadata"]["version"])
        else:
            if source.version is not None:
                raise InvalidSpec(f"spec.vault.version: mount {source.mount!r} is KV version 1, which has no "
                                  "versions; remove the pin")
            response = await self._call(conn, "read", lambda c: c.secrets.kv.v1.read_secret(
                path=source.path, mount_point=source.mount), token=token, where=where)
            data, found = response["data"] or {}, None
        return Fetched(remember({k: _to_bytes(v) for k, v in data.items()}), found)

    async def _call(self, conn: _Connection, operation: str, fn: Callable[[hvac.Client], T], *,
                    token: str | None = None, where: str = "") -> T:
        await conn.bucket.acquire()
        async with conn.limit:
            started = time.monotonic()
            code = "error"
            try:
                result = await asyncio.to_thread(fn, conn.client(token))
                code = "200"
                BACKEND_UP.labels(conn.name).set(1)
                return result
            except hvac.exceptions.VaultError as exc:
                code = str(getattr(exc, "status_code", None) or _status_of(exc))
                BACKEND_UP.labels(conn.name).set(0 if code.startswith("5") else 1)
                raise _translate(exc, code, operation, where) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                BACKEND_UP.labels(conn.name).set(0)
                raise Unavailable(f"Vault connection {conn.name!r} unreachable during {operation}: "
                                  f"{type(exc).__name__}") from None
            finally:
                BACKEND_REQUESTS.labels(conn.name, operation, code).inc()
                BACKEND_SECONDS.labels(conn.name, operation).observe(time.monotonic() - started)


_STATUS = {
    hvac.exceptions.InvalidRequest: 400, hvac.exceptions.Unauthorized: 401, hvac.exceptions.Forbidden: 403,
    hvac.exceptions.InvalidPath: 404, hvac.exceptions.RateLimitExceeded: 429,
    hvac.exceptions.InternalServerError: 500, hvac.exceptions.VaultNotInitialized: 501,
    hvac.exceptions.BadGateway: 502, hvac.exceptions.VaultDown: 503,
}


def _status_of(exc: Exception) -> int:
    return next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 0)


def _translate(exc: hvac.exceptions.VaultError, code: str, operation: str, where: str) -> BackendError:
    # Vault's error strings name paths and policies; they never carry secret data.
    detail = "; ".join(str(e) for e in (exc.errors or [])) if exc.errors else ""
    target = f" {where}" if where else ""
    if code == "404":
        return NotFound(f"Vault has no secret at{target or ' that path'} (404); check spec.vault.mount and path")
    if code in ("401", "403"):
        return PermissionDenied(f"Vault denied {operation}{target} ({code}): {detail or 'permission denied'}")
    if code == "400":
        return InvalidSpec(f"Vault rejected {operation}{target} (400): {detail or 'invalid request'}")
    return Unavailable(f"Vault failed {operation}{target} ({code or 'no status'}): {detail or type(exc).__name__}")


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _vault(spec: SecretSourceSpec) -> VaultSource:
    if spec.vault is None:
        raise InvalidSpec("spec.vault is required when spec.provider is vault")
    return spec.vault
