"""Vault / OpenBao KV backend: logs in as the SecretSource's ServiceAccount, reads KV v1 or v2.

The only module that imports hvac. hvac is synchronous, so calls run in a thread; per connection
a semaphore bounds concurrency and a token bucket bounds the rate, so an operator restart with
thousands of sources does not stampede the server. Vault tokens are cached per identity until
shortly before they expire; identical concurrent reads by the same identity collapse into one.

A denial is remembered for a backoff (2 s, doubling to 300 s while it repeats, as the sync engine
retries): a denied login per identity, a denied read per identity and path. Until it runs out, asking
again costs no token request, login or read; the answer is the same error.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import aiohttp
import hvac
import hvac.exceptions
import hvac.utils
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
)
from rotor.backends.vault.handle import VaultSecret, text
from rotor.backends.vault.kvread import KvReader
from rotor.concurrency import SingleFlight, TokenBucket
from rotor.config import API_SERVER_AUDIENCES, VaultConnection
from rotor.observability.metrics import (
    BACKEND_REQUESTS,
    BACKEND_SECONDS,
    BACKEND_UP,
    COLLAPSED_READS,
    LOGINS,
    TOKEN_CACHE_HITS,
)
from rotor.observability.secrecy import remember
from rotor.planning.schedule import backoff_delay
from rotor.planning.sync import Fetched

T = TypeVar("T")
# (namespace, service account, audience, seconds) -> (jwt, expiry); supplied by rotor.kube.
TokenRequester = Callable[[str, str, str, int], Awaitable[tuple[str, Any]]]

TOKEN_RENEW_MARGIN = 0.2  # log in again once 80% of a Vault token's TTL has passed
JWT_SECONDS = 600  # the shortest TokenRequest lifetime the API server grants
DENIAL_BASE, DENIAL_CAP = 2.0, 300.0  # seconds a denial is remembered: doubling while it repeats
_DENIALS_KEPT = 10_000  # beyond this many remembered denials, long-expired ones are dropped


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


@dataclass
class _Denial:
    message: str
    until: float
    count: int  # denials in a row: the next one is remembered twice as long


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
        self.kv = KvReader(settings)  # reads without hvac, requests or a thread (kvread.py: CPU per refresh)

    @property
    def _verify(self) -> str | bool:
        return str(self.settings.ca_file) if self.settings.ca_file else True

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.settings.address.rstrip("/"), token=token, verify=self._verify,
                           timeout=self.settings.timeout_seconds, session=self.session,
                           namespace=self.settings.namespace)

    def date(self) -> str:
        """The Date header of GET /v1/sys/health: unauthenticated, and answered with some status by a
        sealed or standby server too. (hvac's adapter would return the JSON body, without headers.)"""
        response = self.session.get(f"{self.settings.address.rstrip('/')}/v1/sys/health", verify=self._verify,
                                    timeout=self.settings.timeout_seconds)
        return str(response.headers.get("Date") or "")


class VaultBackend:
    provider: ClassVar[str] = "vault"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(self, connections: dict[str, VaultConnection], request_token: TokenRequester, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connections = {name: _Connection(name, c) for name, c in connections.items()}
        self._request_token = request_token
        self._clock = clock
        self._tokens: dict[Identity, _CachedToken] = {}
        # (identity, None): its login was refused; (identity, what): that read was refused.
        self._denials: dict[tuple[Identity, Hashable], _Denial] = {}
        self._logins: SingleFlight[str] = SingleFlight()
        self._reads: SingleFlight[Fetched] = SingleFlight()

    def describe(self, namespace: str, spec: SecretSourceSpec) -> str:
        source = _vault(spec)
        if source.pki is not None:
            return f"vault:{source.connection}/{source.pki.mount}/issue/{source.pki.role}"
        return f"vault:{source.connection}/{source.mount}/{source.path}"

    async def close(self) -> None:
        for connection in self._connections.values():
            connection.session.close()
            await connection.kv.close()

    # -- public ---------------------------------------------------------------------------------

    async def fetch(self, namespace: str, spec: SecretSourceSpec) -> Fetched:
        source = _vault(spec)
        if source.pki is not None:  # the sync engine issues through bind(): a certificate is not read
            raise InvalidSpec("spec.vault.pki issues certificates; there is no KV secret to read")
        conn = self._connection(source.connection)
        identity = self._identity(namespace, spec, None)
        key = (identity, source.mount, source.path, source.kv_version, source.version)
        result, shared = await self._reads.do(key, lambda: self._as(conn, identity, lambda token: self._read(
            conn, token, source), what=("read", source.mount, source.path)))
        if shared:
            COLLAPSED_READS.labels(conn.name).inc()
        return result

    def bind(self, namespace: str, spec: SecretSourceSpec, actor: Actor | None = None) -> VaultSecret:
        """The source's KV secret, acting as ACTOR's ServiceAccount and Vault role (default: the source's)."""
        source = _vault(spec)
        conn = self._connection(source.connection)
        mount, path = (source.pki.mount, f"issue/{source.pki.role}") if source.pki else (source.mount, source.path)
        return VaultSecret(self, self._identity(namespace, spec, actor), mount, path or "",
                           conn.settings.audit_log_file)

    async def server_time(self, connection: str) -> datetime.datetime:
        """Vault's clock: the Date header of GET /v1/sys/health (unauthenticated)."""
        conn = self._connection(connection)
        date = await self._call(conn, "health", lambda _: conn.date())
        try:
            return email.utils.parsedate_to_datetime(date).astimezone(datetime.UTC)
        except (TypeError, ValueError):
            raise Unavailable(f"Vault connection {conn.name!r} sent no usable Date header") from None

    def forget_token(self, identity: Identity) -> None:
        self._tokens.pop(identity, None)

    async def call_as(self, identity: Identity, operation: str, fn: Callable[[hvac.Client], T], *,
                      where: str = "") -> T:
        """One request as IDENTITY (logged in, token cached)."""
        conn = self._connection(identity.connection)
        return await self._as(conn, identity, lambda token: self._call(conn, operation, fn, token=token,
                                                                        where=where))

    # -- internals ------------------------------------------------------------------------------

    def _connection(self, name: str) -> _Connection:
        try:
            return self._connections[name]
        except KeyError:
            known = ", ".join(sorted(self._connections)) or "none configured"
            raise InvalidSpec(f"spec.vault.connection {name!r} is not a backend connection of this operator "
                              f"(known: {known}); ask the platform team or fix the name") from None

    def _identity(self, namespace: str, spec: SecretSourceSpec, actor: Actor | None) -> Identity:
        source = _vault(spec)
        allowed = self._connection(source.connection).settings.allowed_audiences
        if source.audience not in allowed or source.audience in API_SERVER_AUDIENCES:
            raise InvalidSpec(f"spec.vault.audience {source.audience!r} is not an audience connection "
                              f"{source.connection!r} allows (allowed: {', '.join(allowed)}); use one of those "
                              "(the API server's own audience is never allowed)")
        actor = actor or Actor()
        return Identity(source.connection, namespace, actor.service_account or spec.service_account_name,
                        actor.role or source.role, source.auth_mount, source.audience)

    async def _as(self, conn: _Connection, identity: Identity, action: Callable[[str], Awaitable[T]], *,
                  what: Hashable = None) -> T:
        """ACTION with IDENTITY's token. A cached token that is refused may have been revoked: one fresh
        login tells that apart from a real denial (a token just issued and refused is a real denial).
        WHAT names the action for the memory of denials (None: its denials are not remembered)."""
        if what is not None:
            self._check_denied(identity, what)
        for attempt in (1, 2):
            token, cached = await self._token(conn, identity)
            try:
                result = await action(token)
            except PermissionDenied as err:
                if attempt == 2 or not cached:
                    if what is not None:
                        self._remember_denial((identity, what), err)
                    raise
                self.forget_token(identity)
            else:
                if what is not None:
                    self._denials.pop((identity, what), None)
                return result
        raise AssertionError("unreachable")

    def _check_denied(self, identity: Identity, what: Hashable) -> None:
        """Raise the remembered denial of IDENTITY's login or of WHAT, while it lasts."""
        now = self._clock()
        for key in ((identity, None), (identity, what)):
            denial = self._denials.get(key)
            if denial is not None and now < denial.until:
                raise PermissionDenied(denial.message)

    def _remember_denial(self, key: tuple[Identity, Hashable], err: PermissionDenied) -> None:
        now = self._clock()
        previous = self._denials.get(key)
        count = previous.count + 1 if previous is not None else 1
        self._denials[key] = _Denial(err.message, now + backoff_delay(count, 1.0, base=DENIAL_BASE, cap=DENIAL_CAP),
                                     count)
        if len(self._denials) > _DENIALS_KEPT:  # a forgotten denial only costs one more attempt
            self._denials = {k: d for k, d in self._denials.items() if now - d.until < DENIAL_CAP}

    async def _token(self, conn: _Connection, identity: Identity) -> tuple[str, bool]:
        """(token, whether it came from the cache)."""
        self._check_denied(identity, None)
        cached = self._tokens.get(identity)
        if cached is not None and self._clock() < cached.renew_at:
            TOKEN_CACHE_HITS.labels(conn.name).inc()
            return cached.token, True
        token, _ = await self._logins.do(identity, lambda: self._login(conn, identity))
        return token, False

    async def _login(self, conn: _Connection, identity: Identity) -> str:
        try:
            token = await self._login_once(conn, identity)
        except PermissionDenied as err:  # no token for this identity: remembered for its backoff
            self._remember_denial((identity, None), err)
            raise
        self._denials.pop((identity, None), None)
        return token

    async def _login_once(self, conn: _Connection, identity: Identity) -> str:
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
        self._tokens[identity] = _CachedToken(token, self._clock() + ttl * (1 - TOKEN_RENEW_MARGIN))
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
            api_path = hvac.utils.format_url("/v1/{mount}/data/{path}", mount=source.mount, path=source.path)
            params = {"version": source.version} if source.version is not None else None
            response = await self._call(conn, "read", lambda c: c.secrets.kv.v2.read_secret_version(
                path=source.path, mount_point=source.mount, version=source.version,
                raise_on_deleted_version=True), token=token, where=where,
                direct=(lambda: conn.kv.get(token, api_path, params)) if conn.kv.usable else None)
            data = response["data"]["data"] or {}
            found = str(response["data"]["metadata"]["version"])
        else:
            if source.version is not None:
                raise InvalidSpec(f"spec.vault.version: mount {source.mount!r} is KV version 1, which has no "
                                  "versions; remove the pin")
            api_path = hvac.utils.format_url("/v1/{mount}/{path}", mount=source.mount, path=source.path)
            response = await self._call(conn, "read", lambda c: c.secrets.kv.v1.read_secret(
                path=source.path, mount_point=source.mount), token=token, where=where,
                direct=(lambda: conn.kv.get(token, api_path)) if conn.kv.usable else None)
            data, found = response["data"] or {}, None
        return Fetched(remember({k: text(v).encode() for k, v in data.items()}), found)

    async def _call(self, conn: _Connection, operation: str, fn: Callable[[hvac.Client], T], *,
                    token: str | None = None, where: str = "", direct: Callable[[], Awaitable[T]] | None = None) -> T:
        """FN with a client for TOKEN, in a thread; DIRECT instead, if given (the same request on the loop)."""
        await conn.bucket.acquire()
        async with conn.limit:
            started = time.monotonic()
            code = "error"
            try:
                result = await (direct() if direct is not None else asyncio.to_thread(fn, conn.client(token)))
                code = "200"
                BACKEND_UP.labels(conn.name).set(1)
                return result
            except hvac.exceptions.VaultError as exc:
                code = str(getattr(exc, "status_code", None) or _status_of(exc))
                BACKEND_UP.labels(conn.name).set(0 if code.startswith("5") else 1)
                raise _translate(exc, code, operation, where) from None
            except (requests.ConnectionError, requests.Timeout, aiohttp.ClientError, TimeoutError) as exc:
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


def _vault(spec: SecretSourceSpec) -> VaultSource:
    if spec.vault is None:
        raise InvalidSpec("spec.vault is required when spec.provider is vault")
    return spec.vault
