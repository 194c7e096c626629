"""What an engine may ask of a backend, split by capability (as ESO's provider interface, but smaller).

Every backend reads (Backend). Beyond that, `Backend.bind` gives a handle on one secret's location,
acting as one identity, that implements the capability protocols the backend declares in
`capabilities`: VersionStore, LeaseIssuer, StaticCredentials, AuditTrail, KeyRing, CertificateIssuer.
A VersionStore may also be a StagedVersions (versions with staging labels: AWS Secrets Manager).
Engines check a spec against `capabilities` (planning.capabilities) and never import a concrete backend.

Errors carry a status reason; their messages name paths, roles and codes, never values.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.api.secretsource import SecretSourceSpec
from rotor.planning.sync import Fetched
from rotor.planning.vault_audit import Requests


class BackendError(Exception):
    """A failure with a status reason. Messages name paths, roles and codes, never values."""

    reason: ClassVar[str] = keys.BACKEND_UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(BackendError):
    reason = keys.NOT_FOUND


class PermissionDenied(BackendError):
    reason = keys.PERMISSION_DENIED


class Unavailable(BackendError):
    reason = keys.BACKEND_UNAVAILABLE


class InvalidSpec(BackendError):
    reason = keys.INVALID_SPEC


class VersionConflict(BackendError):
    """A check-and-set write lost: someone (or our own earlier attempt) wrote first."""

    reason = keys.CONFLICT


class AuditLogUnreadable(BackendError):
    reason = keys.AUDIT_LOG_UNREADABLE


@dataclass(frozen=True)
class Actor:
    """Who acts on a secret: a ServiceAccount of the secret's namespace and, for backends with roles,
    the role it logs in with. None fields fall back to the SecretSource's own identity."""

    service_account: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class Lease:
    """Per-lease credentials just issued. `data` holds values: memory only, never logged."""

    data: Mapping[str, str]
    lease_id: str
    ttl: int  # seconds
    renewable: bool = True
    holder: str = field(default="", repr=False)  # what hold_lease needs (a Vault token): memory only

    def __repr__(self) -> str:
        return f"Lease(keys={sorted(self.data)}, ttl={self.ttl})"


@runtime_checkable
class SecretHandle(Protocol):
    """One secret's location in a backend, bound to the identity acting on it."""

    @property
    def where(self) -> str:
        """The location for messages and status, e.g. 'vault:default/secret/app/db'."""
        ...

    @property
    def actor(self) -> str:
        """Who acts, for timelines: 'namespace/serviceaccount'."""
        ...


@runtime_checkable
class VersionStore(SecretHandle, Protocol):
    """Capability.WRITE_VERSION and Capability.VERSIONS: a versioned key/value secret."""

    async def read_version(self, version: str | None = None) -> tuple[dict[str, str], str | None]:
        """The data of VERSION (latest if None) and its version; ({}, None) when there is no latest
        version to read (the secret does not exist yet, or its latest version was deleted or destroyed).
        NotFound when a named version is gone (destroyed, deleted, or never written)."""
        ...

    async def write_version(self, data: Mapping[str, str], cas: str) -> str:
        """Write DATA as the version after CAS ("0": the secret must have no version yet); the new
        version. VersionConflict when CAS is not the latest version (someone else wrote first)."""
        ...

    async def list_versions(self) -> list[str]:
        """Versions not yet destroyed, oldest first ([] when there is no secret). A backend may keep only
        the newest few (Vault keeps 10 unless the mount says otherwise); older ones are gone."""
        ...

    async def destroy_versions(self, versions: Sequence[str]) -> None:
        """Permanently remove VERSIONS (a no-op for none, and for versions already gone)."""
        ...

    async def version_created(self, version: str) -> datetime.datetime | None:
        """When VERSION was written, by the backend's clock (destroyed versions keep it); None when it
        never was."""
        ...

    async def custom_metadata(self) -> dict[str, str]:
        """The secret's own metadata (Rotor keeps lease ids and rotation ids there); {} when none."""
        ...

    async def set_custom_metadata(self, changes: Mapping[str, str]) -> None:
        """Merge CHANGES into the metadata; "" removes a key. Not atomic: read, merge, write."""
        ...


@runtime_checkable
class StagedVersions(VersionStore, Protocol):
    """A VersionStore whose versions carry staging labels (AWS Secrets Manager: AWSPENDING, AWSCURRENT,
    AWSPREVIOUS). A new version is put aside first (pending: readers of the current version do not get
    it), then made current in a second call; the one it replaces stays readable until destroyed. Here
    destroy_versions removes a version's labels (the backend deletes unlabelled versions later, itself),
    list_versions lists the labelled ones, and the current version cannot be destroyed (InvalidSpec)."""

    async def stage_version(self, data: Mapping[str, str], key: str) -> str:
        """Write DATA as a pending version whose id derives from KEY (a rotation's id): asked again with
        the same KEY, nothing new is written. The version."""
        ...

    async def staged_version(self, key: str) -> str | None:
        """The version stage_version wrote for KEY (labelled or not), None when it wrote none."""
        ...

    async def promote(self, version: str) -> None:
        """Readers of the current version get VERSION from now on; the current one stays readable as the
        previous. A no-op when VERSION is current. NotFound when VERSION does not exist."""
        ...


ISSUE_GRACE_SECONDS = 30  # a lease just issued lives this long unless held (LeaseIssuer.hold_lease)


@runtime_checkable
class LeaseIssuer(SecretHandle, Protocol):
    """Capability.LEASES: per-lease credentials from a secrets engine mount and role."""

    async def issue_lease(self, mount: str, role: str, *, grace: int = ISSUE_GRACE_SECONDS) -> Lease:
        """New credentials with their own lease; its TTL is the role's default TTL. The lease dies GRACE
        seconds from now unless hold_lease keeps it: a caller that dies before recording the lease
        leaves nothing behind that outlives GRACE. (Vault: it is issued under an orphan token of its
        own, which lives GRACE seconds, and goes with it.)"""
        ...

    async def hold_lease(self, lease: Lease, seconds: int) -> int:
        """Let LEASE (just issued) live SECONDS from now, given renewals (its max TTL still applies); the
        seconds granted, fewer when the backend caps how long it holds a lease (its token's max TTL)."""
        ...

    async def renew_lease(self, lease_id: str, increment: int | None = None) -> int:
        """Extend the lease by INCREMENT seconds (default: the role's TTL), never past the role's max
        TTL; its new TTL in seconds. NotFound once the lease is gone (revoked or expired)."""
        ...

    async def lease_alive(self, lease_id: str) -> bool:
        """False once the lease is revoked or expired (or was never issued)."""
        ...

    async def revoke_lease(self, lease_id: str) -> None:
        """The credentials stop working now (a no-op for a lease already gone)."""
        ...

    async def lease_role_ttl(self, mount: str, role: str) -> tuple[int, int]:
        """(default TTL, max TTL) of the role, in seconds (0: the backend's default)."""
        ...

    async def backend_time(self) -> datetime.datetime:
        """The backend's clock now (lease times are compared with it). Needs no permission."""
        ...


@runtime_checkable
class StaticCredentials(SecretHandle, Protocol):
    """Capability.STATIC_CREDENTIALS: a static database role whose password the backend sets."""

    async def rotate_static(self, mount: str, role: str) -> None:
        """The backend sets a new password for the role's user now."""
        ...

    async def static_credentials(self, mount: str, role: str) -> dict[str, str]:
        """The role's current username and password (values: memory only)."""
        ...

    async def static_last_rotation(self, mount: str, role: str) -> datetime.datetime | None:
        """When the backend last set the role's password, by the backend's clock."""
        ...

    async def backend_time(self) -> datetime.datetime:
        """The backend's clock now, so decisions compare its times with its own time. Needs no
        permission of the acting identity."""
        ...


@dataclass(frozen=True)
class AuditReads:
    """Reads of a secret found in the backend's audit trail (no values: names, times, identities)."""

    reads: list[dict[str, Any]]
    total: int
    source: str  # where they were found (for the note in status)


@runtime_checkable
class AuditTrail(SecretHandle, Protocol):
    """Capability.AUDIT_TRAIL: who read the secret in a time window."""

    async def audit_reads(self, start: datetime.datetime, end: datetime.datetime | None,
                          limit: int = 100) -> AuditReads | None:
        """The reads in [START, END] (by anyone, denied ones included), the first LIMIT listed and all
        counted; None when no audit trail is configured. Needs no permission of the acting identity."""
        ...


@runtime_checkable
class AuditRequests(AuditTrail, Protocol):
    """Capability.AUDIT_TRAIL of a backend whose trail holds every request of the server, so it can say
    who issued from a PKI role or used a Transit key, not only who read the bound secret (Vault)."""

    async def audit_requests(self, requests: Requests, start: datetime.datetime, end: datetime.datetime | None,
                             limit: int = 100) -> AuditReads | None:
        """The REQUESTS in [START, END] (by anyone, denied ones included), as audit_reads."""
        ...


@dataclass(frozen=True)
class KeyVersions:
    """Which versions of a named key are in use (numbers only: never key material)."""

    latest: int  # new signatures and ciphertexts use this one
    min_decryption: int  # the oldest version that still decrypts and verifies
    min_encryption: int  # the oldest version a caller may ask to encrypt or sign with (0: no floor)
    # When the latest version was made, by the backend's clock (None: not told); not part of equality.
    latest_created: datetime.datetime | None = field(default=None, compare=False)


@runtime_checkable
class KeyRing(SecretHandle, Protocol):
    """Capability.KEY_VERSIONS: a named key of an encryption-as-a-service engine (Vault Transit) whose
    versions are rotated in place; callers sign and encrypt through the backend, never holding the key."""

    async def key_versions(self, mount: str, key: str) -> KeyVersions:
        """The key's versions in use. NotFound when there is no such key."""
        ...

    async def rotate_key(self, mount: str, key: str) -> int:
        """A new version of the key, used from now on for new signatures and ciphertexts; its number.
        NotFound when there is no such key."""
        ...

    async def set_min_versions(self, mount: str, key: str, *, decryption: int, encryption: int) -> None:
        """Versions below DECRYPTION stop decrypting and verifying; below ENCRYPTION (0: no floor) stop
        encrypting and signing. InvalidSpec for a minimum above the latest version, or an encryption floor
        under the decryption one."""
        ...

    async def export_key(self, mount: str, key: str, kind: str, version: int) -> str:
        """The key material of VERSION as the backend exports it (KIND: encryption-key, signing-key,
        hmac-key or public-key). A value: memory only, never logged. InvalidSpec when the key is not
        exportable or VERSION is retired (below the minimum decryption version) or does not exist;
        NotFound when there is no such key."""
        ...


@dataclass(frozen=True)
class Certificate:
    """A certificate just issued. private_key (and the PEMs) live in memory only; repr names no value."""

    certificate: str = field(repr=False)  # PEM of the leaf
    private_key: str = field(repr=False)  # PEM
    ca_chain: tuple[str, ...] = field(repr=False)  # PEMs of the issuing CA and up, leaf excluded
    issuing_ca: str = field(repr=False)  # PEM
    serial: str  # colon-separated hex, as Vault writes it
    not_after: datetime.datetime

    def __repr__(self) -> str:
        return f"Certificate(serial={self.serial}, not_after={self.not_after.isoformat()})"


@runtime_checkable
class CertificateIssuer(SecretHandle, Protocol):
    """Capability.CERTIFICATES: certificates from a PKI role (Vault PKI), issued as the handle's identity."""

    async def issue_certificate(self, mount: str, role: str, common_name: str, alt_names: Sequence[str],
                                ip_sans: Sequence[str], ttl: int, key_type: str | None = None,
                                key_bits: int | None = None) -> Certificate:
        """A new key and certificate for the names, living TTL seconds (the role's max TTL caps it).
        InvalidSpec (with the backend's words) when the role does not exist or refuses a name, key or TTL."""
        ...

    async def revoke_certificate(self, mount: str, serial: str) -> None:
        """The certificate goes on the CRL now (a no-op for one already revoked or expired)."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Reads the secret a SecretSource names, as the identity the SecretSource names."""

    capabilities: ClassVar[frozenset[Capability]]

    @property
    def provider(self) -> str:
        """The spec.provider this backend serves (a class attribute of real backends; read-only here so an
        instance attribute, as a test fake's, satisfies it too)."""
        ...

    async def fetch(self, namespace: str, spec: SecretSourceSpec) -> Fetched:
        """The values (bytes) and version of the secret (the pinned version, if the spec pins one).
        NotFound when there is none; PermissionDenied when the identity may not read it."""
        ...

    def describe(self, namespace: str, spec: SecretSourceSpec) -> str:
        """Where the secret lives, for status and inventory (e.g. 'vault:default/secret/app/db')."""
        ...

    def bind(self, namespace: str, spec: SecretSourceSpec, actor: Actor | None = None) -> SecretHandle:
        """A handle on the SecretSource's secret acting as ACTOR (default: the source's identity),
        implementing the capability protocols this backend declares. InvalidSpec when the spec
        names nothing this backend can act on."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class LoginCheck(Protocol):
    """Can a leaked database credential still log in? (rotor.backends.postgres)"""

    async def try_login(self, host: str, port: int, dbname: str, user: str, password: str) -> str:
        """'accepted', 'refused', or why the database could not be asked (never a value)."""
        ...
