"""An in-memory backend with every capability, for fast engine unit tests.

It behaves like Vault's KV v2 (versions, check-and-set, destroy, the newest 10 versions kept, custom
metadata), its database engine (roles that must exist; leases with a TTL and a max TTL; static roles
whose password the backend sets), its Transit keys (tests/fakes/transit.py) and its file audit log,
on a clock the test controls. It passes the same contract tests as the real Vault backend
(tests/contract/), so an engine test that passes here asks nothing of a backend that Vault would
refuse. Error types and their triggers follow Vault's answers (e.g. an unknown database role is
InvalidSpec, as Vault's 400 "unknown role" is).

A lease lives only as long as the token it was issued under (`holders`): GRACE seconds unless held,
as Vault's orphan lease tokens do.

Set-up, as an administrator would: put(), add_lease_role(), add_static_role(), add_transit_key();
`audit_trail = False` for a backend without an audit log. Faults a test can set: `down` (every call
raises Unavailable), `denied` (identities, "namespace/serviceaccount", whose calls raise
PermissionDenied), `fail_next` (the next call of an operation raises the given error once).
"""

from __future__ import annotations

import datetime
import itertools
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rotor.api.capabilities import Capability
from rotor.api.secretsource import SecretSourceSpec, VaultSource
from rotor.backends.protocols import (
    ISSUE_GRACE_SECONDS,
    Actor,
    AuditReads,
    BackendError,
    InvalidSpec,
    Lease,
    NotFound,
    PermissionDenied,
    Unavailable,
    VersionConflict,
)
from rotor.planning import times
from rotor.planning.sync import Fetched
from rotor.planning.vault_audit import Requests
from tests.fakes.pki import FakePkiCertificates, FakePkiRole
from tests.fakes.transit import FakeKey, FakeTransitKeys, missing_key

MAX_VERSIONS = 10  # Vault's default max_versions of a KV v2 mount: older versions are removed
TOKEN_MAX_TTL = 32 * 86400  # Vault's default max TTL of a token (a lease's holder lives no longer)


@dataclass
class _Version:
    data: dict[str, str]
    created: datetime.datetime
    destroyed: bool = False


@dataclass
class _Secret:
    versions: dict[int, _Version] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    current: int = 0  # the latest version written (still counted when removed or destroyed)

    def write(self, data: Mapping[str, str], now: datetime.datetime) -> str:
        self.current += 1
        self.versions[self.current] = _Version(dict(data), now)
        for old in sorted(self.versions)[:-MAX_VERSIONS]:
            del self.versions[old]
        return str(self.current)


@dataclass
class _Lease:
    data: dict[str, str]
    ttl: int
    expires: datetime.datetime
    max_expires: datetime.datetime
    holder: str  # the token it was issued under: the lease dies with it (FakeBackend.holders)
    revoked: bool = False


@dataclass
class _StaticRole:
    username: str
    password: str
    last_rotation: datetime.datetime


class FakeClock:
    """The backend's clock; tests move it with advance()."""

    def __init__(self, start: datetime.datetime | None = None) -> None:
        self.now = start or datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


class FakeBackend:
    """rotor.backends.protocols.Backend over dicts. `provider` defaults to "vault" so specs written for
    Vault (spec.vault.connection/mount/path/role) work unchanged; a subclass may declare fewer capabilities."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(self, *, provider: str = "vault", clock: FakeClock | None = None,
                 lease_ttl: int = 60, lease_max_ttl: int = 300) -> None:
        self.provider = provider
        self.clock = clock or FakeClock()
        self.secrets: dict[tuple[str, str], _Secret] = {}
        self.leases: dict[str, _Lease] = {}
        self.holders: dict[str, datetime.datetime] = {}  # lease token -> when it expires
        self.roles: dict[tuple[str, str], tuple[int, int]] = {}  # (mount, role) -> (ttl, max ttl)
        self.static_roles: dict[tuple[str, str], _StaticRole] = {}
        self.audit: list[dict[str, Any]] = []
        self.transit_keys: dict[tuple[str, str], FakeKey] = {}  # (mount, key)
        self.pki_roles: dict[tuple[str, str], FakePkiRole] = {}  # (mount, role)
        self.revoked_serials: set[str] = set()
        self.audit_trail = True
        self.calls: list[tuple[str, str]] = []  # (operation, where)
        self.down = False
        self.denied: set[str] = set()  # "namespace/serviceaccount"
        self.fail_next: dict[str, BackendError] = {}
        self.lease_ttl, self.lease_max_ttl = lease_ttl, lease_max_ttl
        self._ids = itertools.count(1)

    # -- set-up, as an administrator would ----------------------------------------------------------

    def put(self, mount: str, path: str, data: Mapping[str, str]) -> str:
        return self.secrets.setdefault((mount, path), _Secret()).write(data, self.clock())

    def add_lease_role(self, mount: str, role: str, ttl: int | None = None, max_ttl: int | None = None) -> None:
        """A dynamic role issuing leases of TTL seconds, renewable up to MAX_TTL (defaults: the backend's)."""
        self.roles[(mount, role)] = (ttl or self.lease_ttl, max_ttl or self.lease_max_ttl)

    def add_static_role(self, mount: str, role: str, username: str) -> None:
        """A static role; the backend sets its user's password at once (as Vault does)."""
        self.static_roles[(mount, role)] = _StaticRole(username, secrets.token_hex(8), self.clock())

    def add_transit_key(self, mount: str, key: str) -> FakeKey:
        """A Transit key at version 1 (as `vault write -f transit/keys/<key>` makes it)."""
        return self.transit_keys.setdefault((mount, key), FakeKey())

    def add_pki_role(self, mount: str, role: str, *domains: str, max_ttl: int = 3600) -> FakePkiRole:
        """A PKI role issuing for DOMAINS and names under them (pki.py)."""
        return self.pki_roles.setdefault((mount, role), FakePkiRole(domains, max_ttl=max_ttl))

    def live_leases(self) -> list[str]:
        return [i for i in self.leases if self.lease_live(i)]

    def lease_live(self, lease_id: str) -> bool:
        """Not revoked, not expired, and its token alive (Vault revokes a token's leases with it)."""
        lease = self.leases.get(lease_id)
        now = self.clock()
        return lease is not None and not lease.revoked and lease.expires > now and \
            self.holders.get(lease.holder, now) > now

    # -- Backend ----------------------------------------------------------------------------------

    def describe(self, namespace: str, spec: SecretSourceSpec) -> str:
        source = _vault(spec)
        if source.pki is not None:
            return f"{self.provider}:{source.connection}/{source.pki.mount}/issue/{source.pki.role}"
        return f"{self.provider}:{source.connection}/{source.mount}/{source.path}"

    async def fetch(self, namespace: str, spec: SecretSourceSpec) -> Fetched:
        handle = self.bind(namespace, spec)
        pinned = _vault(spec).version
        data, version = await handle.read_version(str(pinned) if pinned else None)
        if version is None:
            raise NotFound(f"no secret at {handle.where}")
        return Fetched({k: v.encode() for k, v in data.items()}, version)

    def bind(self, namespace: str, spec: SecretSourceSpec, actor: Actor | None = None) -> FakeSecret:
        source = _vault(spec)
        actor = actor or Actor()
        account = actor.service_account or spec.service_account_name
        return FakeSecret(self, self.describe(namespace, spec), source.mount, source.path or "",
                          f"{namespace}/{account}", actor.role or source.role)

    async def close(self) -> None:
        return None

    # -- faults -------------------------------------------------------------------------------------

    def call(self, operation: str, where: str, actor: str | None) -> None:
        """Record a call; raise the fault set for it. ACTOR None: a call that needs no permission."""
        self.calls.append((operation, where))
        if self.down:
            raise Unavailable(f"fake backend down during {operation}")
        if actor is not None and actor in self.denied:
            raise PermissionDenied(f"{actor} may not {operation} {where}")
        error = self.fail_next.pop(operation, None)
        if error is not None:
            raise error


class FakeSecret(FakeTransitKeys, FakePkiCertificates):
    """One secret of a FakeBackend as one identity: every capability protocol (KeyRing: transit.py;
    CertificateIssuer: pki.py)."""

    def __init__(self, backend: FakeBackend, where: str, mount: str, path: str, actor: str, role: str) -> None:
        self._b, self._where, self.mount, self.path = backend, where, mount, path
        self._actor, self._role = actor, role

    @property
    def where(self) -> str:
        return self._where

    @property
    def actor(self) -> str:
        return self._actor

    def __repr__(self) -> str:
        return f"FakeSecret({self.where} as {self.actor})"

    def _call(self, operation: str) -> _Secret | None:
        self._b.call(operation, f"{self.mount}/{self.path}", self._actor)
        return self._b.secrets.get((self.mount, self.path))

    def _created(self) -> _Secret:
        return self._b.secrets.setdefault((self.mount, self.path), _Secret())

    def _key(self, operation: str, mount: str, key: str) -> FakeKey:
        self._b.call(operation, f"{mount}/keys/{key}", self._actor)
        found = self._b.transit_keys.get((mount, key))
        if found is None:
            raise missing_key(mount, key)
        return found

    def _pki_role(self, operation: str, mount: str, role: str) -> FakePkiRole:
        self._b.call(operation, f"{mount}/issue/{role}", self._actor)
        found = self._b.pki_roles.get((mount, role))
        if found is None:
            raise InvalidSpec(f"fake backend rejected {operation} {mount}/issue/{role} (400): unknown role: {role}")
        return found

    def _revoked(self) -> set[str]:
        return self._b.revoked_serials

    # -- VersionStore ---------------------------------------------------------------------------------

    async def read_version(self, version: str | None = None) -> tuple[dict[str, str], str | None]:
        try:
            secret = self._call("read")
        except PermissionDenied:
            self._audited(denied=True)  # Vault's audit log has denied reads too
            raise
        self._audited(denied=False)
        number = int(version) if version else (secret.current if secret else 0)
        found = secret.versions.get(number) if secret else None
        if found is None or found.destroyed:
            if version is None:
                return {}, None  # Vault answers 404 alike for no secret and for a latest version gone
            raise NotFound(f"version {number} of {self.mount}/{self.path} does not exist or is destroyed")
        return dict(found.data), str(number)

    def _audited(self, *, denied: bool) -> None:
        self._b.audit.append({"time": self._b.clock(), "path": f"{self.mount}/data/{self.path}",
                              "serviceAccount": self._actor, "role": self._role, "denied": denied})

    async def write_version(self, data: Mapping[str, str], cas: str) -> str:
        secret = self._call("kv-write") or self._created()
        if int(cas) != secret.current:
            raise VersionConflict(f"{self.mount}/{self.path} changed since version {cas}")
        return secret.write(data, self._b.clock())

    async def list_versions(self) -> list[str]:
        secret = self._call("kv-metadata")
        return [str(v) for v, found in sorted((secret.versions if secret else {}).items()) if not found.destroyed]

    async def destroy_versions(self, versions: Sequence[str]) -> None:
        if not versions:
            return
        secret = self._call("kv-destroy")
        for version in versions:
            found = secret.versions.get(int(version)) if secret else None
            if found is not None:
                found.destroyed, found.data = True, {}

    async def version_created(self, version: str) -> datetime.datetime | None:
        secret = self._call("kv-metadata")
        found = secret.versions.get(int(version)) if secret else None
        return found.created if found else None

    async def custom_metadata(self) -> dict[str, str]:
        secret = self._call("kv-metadata")
        return dict(secret.metadata) if secret else {}

    async def set_custom_metadata(self, changes: Mapping[str, str]) -> None:
        secret = self._call("kv-metadata-write") or self._created()
        secret.metadata = {k: v for k, v in {**secret.metadata, **changes}.items() if v}

    # -- LeaseIssuer ----------------------------------------------------------------------------------

    async def issue_lease(self, mount: str, role: str, *, grace: int = ISSUE_GRACE_SECONDS) -> Lease:
        self._b.call("dynamic-issue", f"{mount}/creds/{role}", self._actor)
        if (mount, role) not in self._b.roles:
            raise InvalidSpec(f"fake backend rejected dynamic-issue {mount}/creds/{role} (400): unknown role: "
                              f"{role} (FakeBackend.add_lease_role adds it)")
        ttl, max_ttl = self._b.roles[(mount, role)]
        number = next(self._b._ids)
        lease_id, holder = f"{mount}/creds/{role}/{number}", f"holder-{number}"
        data = {"username": f"v-{role}-{secrets.token_hex(4)}", "password": secrets.token_hex(12)}
        now = self._b.clock()
        self._b.holders[holder] = now + datetime.timedelta(seconds=grace)
        self._b.leases[lease_id] = _Lease(data, ttl, now + datetime.timedelta(seconds=ttl),
                                          now + datetime.timedelta(seconds=max_ttl), holder)
        return Lease(dict(data), lease_id, ttl, True, holder)

    async def hold_lease(self, lease: Lease, seconds: int) -> int:
        self._b.call("lease-token-renew", "auth/token/renew-self", None)  # the lease's own token: any identity
        now = self._b.clock()
        if self._b.holders.get(lease.holder, now) <= now:
            raise PermissionDenied("fake backend: the lease's token expired (403 permission denied)")
        granted = min(seconds, TOKEN_MAX_TTL)
        self._b.holders[lease.holder] = now + datetime.timedelta(seconds=granted)
        return granted

    def _live(self, lease_id: str) -> _Lease | None:
        return self._b.leases[lease_id] if self._b.lease_live(lease_id) else None

    async def renew_lease(self, lease_id: str, increment: int | None = None) -> int:
        self._b.call("lease-renew", "sys/leases/renew", self._actor)
        lease = self._live(lease_id)
        if lease is None:
            raise NotFound("fake backend has no such lease to renew (revoked or expired)")
        now = self._b.clock()
        lease.expires = min(lease.max_expires, now + datetime.timedelta(seconds=increment or lease.ttl))
        return int((lease.expires - now).total_seconds())

    async def lease_alive(self, lease_id: str) -> bool:
        self._b.call("lease-lookup", "sys/leases/lookup", self._actor)
        return self._live(lease_id) is not None

    async def revoke_lease(self, lease_id: str) -> None:
        self._b.call("lease-revoke", "sys/leases/revoke", self._actor)
        lease = self._b.leases.get(lease_id)
        if lease is not None:
            lease.revoked = True

    async def lease_role_ttl(self, mount: str, role: str) -> tuple[int, int]:
        self._b.call("role-read", f"{mount}/roles/{role}", self._actor)
        if (mount, role) not in self._b.roles:
            raise NotFound(f"fake backend has no role at {mount}/roles/{role} (404)")  # as Vault's 404
        return self._b.roles[(mount, role)]

    # -- StaticCredentials ----------------------------------------------------------------------------

    def _static(self, operation: str, mount: str, role: str) -> _StaticRole:
        self._b.call(operation, f"{mount}/static-creds/{role}", self._actor)
        found = self._b.static_roles.get((mount, role))
        if found is None:  # Vault: 400 "unknown role" / "no static role found for role name"
            raise InvalidSpec(f"fake backend rejected {operation} {mount}/static-creds/{role} (400): unknown role")
        return found

    async def rotate_static(self, mount: str, role: str) -> None:
        found = self._static("static-rotate", mount, role)
        found.password, found.last_rotation = secrets.token_hex(8), self._b.clock()

    async def static_credentials(self, mount: str, role: str) -> dict[str, str]:
        found = self._static("static-creds", mount, role)
        return {"username": found.username, "password": found.password}

    async def static_last_rotation(self, mount: str, role: str) -> datetime.datetime | None:
        return self._static("static-creds", mount, role).last_rotation

    async def backend_time(self) -> datetime.datetime:
        self._b.call("health", "sys/health", None)  # unauthenticated, as Vault's sys/health
        return self._b.clock()

    # -- AuditTrail -------------------------------------------------------------------------------------

    async def audit_reads(self, start: datetime.datetime, end: datetime.datetime | None,
                          limit: int = 100) -> AuditReads | None:
        """Rows shaped as rotor.planning.vault_audit makes them from Vault's log (no backend call: Rotor
        reads the log file itself)."""
        if not self._b.audit_trail:
            return None
        path = f"{self.mount}/data/{self.path}"
        found = [{"time": times.iso(r["time"], millis=True), "operation": "read", "path": path,
                  "serviceAccount": r["serviceAccount"], "role": r["role"],
                  "displayName": "kubernetes-" + r["serviceAccount"].replace("/", "-"),  # as Vault names logins
                  "remoteAddress": "127.0.0.1", "denied": r["denied"]}
                 for r in self._b.audit
                 if r["path"] == path and r["time"] >= start and (end is None or r["time"] <= end)]
        return AuditReads(found[:limit], len(found), "fake audit log")

    async def audit_requests(self, requests: Requests, start: datetime.datetime, end: datetime.datetime | None,
                             limit: int = 100) -> AuditReads | None:
        """REQUESTS among every entry of the fake log (a test appends PKI and Transit requests to
        `audit` as Vault would log them: path, operation, identity, keyVersion)."""
        if not self._b.audit_trail:
            return None
        found = []
        for r in self._b.audit:
            action = requests.action(r["path"], r.get("operation", "read"))
            if action is None or r["time"] < start or (end is not None and r["time"] > end):
                continue
            row = {"time": times.iso(r["time"], millis=True), "operation": action, "path": r["path"],
                   "serviceAccount": r["serviceAccount"], "role": r["role"], "displayName": r.get("displayName"),
                   "remoteAddress": "127.0.0.1", "denied": r["denied"]}
            found.append(row | ({"keyVersion": r["keyVersion"]} if "keyVersion" in r else {}))
        return AuditReads(found[:limit], len(found), "fake audit log")


def _vault(spec: SecretSourceSpec) -> VaultSource:
    if spec.vault is None:
        raise InvalidSpec("spec.vault is required when spec.provider is vault")
    return spec.vault
