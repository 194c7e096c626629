"""How engines see each other: read-only views and a few commands, as protocols.

Engines never import each other (an import-linter independence contract). What one needs of
another is declared here and rotor.wiring passes the real thing in; unit tests pass plain fakes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.planning.incident_denylist import Scope


class SourceView(Protocol):
    """One SecretSource as the sync engine last saw it (status without values: digests, versions)."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> SecretSourceSpec | None: ...

    @property
    def status(self) -> dict[str, Any]: ...


class Sources(Protocol):
    """The SecretSource engine, as the rotation and incident engines use it."""

    @property
    def hmac_key(self) -> bytes:
        """The operator's key for value digests (planning.hashing): incidents fingerprint leaked values."""
        ...

    def source(self, namespace: str, name: str) -> SourceView | None:
        """The SecretSource, or None if it does not exist (or is being deleted)."""
        ...

    def source_for_target(self, namespace: str, target: str) -> str | None:
        """The SecretSource whose target Secret is TARGET, if any."""
        ...

    def sync_now(self, namespace: str, name: str) -> None:
        """Read the backend and write the Secret now, not at the next refresh."""
        ...

    def set_denylist(self, owner: Hashable, digests: frozenset[str], scope: Scope | None = None) -> None:
        """Value digests (planning.hashing.value_hmac) that the sources SCOPE covers must never deliver
        (None: every source); OWNER is the incident that reported them (an empty set lifts its list)."""
        ...


class FeedHealth(Protocol):
    """The change feed engine, as the SecretSource engine asks it whether a timer refresh may wait."""

    def healthy_since(self, connection: str) -> float | None:
        """Since when (time.monotonic) CONNECTION's feed has seen every change; None while it cannot say."""
        ...

    def healthy_interval(self, connection: str) -> float | None:
        """The backstop interval of CONNECTION's sources while its feed is healthy; None: it has no feed."""
        ...

    def wants_record(self, connection: str) -> bool:
        """True while CONNECTION's feed has heard nothing for half its idle time: a read now (which Vault
        audits) keeps a quiet Vault's feed from going idle, and shows the stream still flows."""
        ...


@runtime_checkable
class CertificateRequests(Protocol):
    """The SecretSource engine, as a RotationPolicy with strategy certificate asks it for a renewal."""

    def request_certificate(self, namespace: str, name: str, rotation_id: str) -> None:
        """Issue a new certificate for the source now, for rotation ROTATION_ID, unless its status says
        one was issued for that rotation (status.certificate.rotation): asking again issues nothing."""
        ...


@runtime_checkable
class VersionPins(Protocol):
    """The SecretSource engine, as a rotation on a store with staging labels (AWS Secrets Manager) asks it
    to deliver the new version before it is current: readers move first, the current label after."""

    def pin_version(self, namespace: str, name: str, version: str | None) -> None:
        """Deliver VERSION of the source's secret instead of the one its spec names (None: the spec's
        again); a change syncs the source now. In memory: the rotation sets it again at each step."""
        ...


class PolicyView(Protocol):
    """One RotationPolicy as the rotation engine last saw it."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> RotationPolicySpec | None: ...

    @property
    def status(self) -> dict[str, Any]: ...

    @property
    def rotate_now(self) -> str | None: ...


class Policies(Protocol):
    """The rotation engine, as the incident engine uses it."""

    def policy(self, namespace: str, name: str) -> PolicyView | None: ...

    def policies_in(self, namespace: str) -> Sequence[PolicyView]: ...


class Wake(Protocol):
    """Run a key's step now (a scheduler's schedule(key, 0))."""

    def __call__(self, key: Hashable) -> None: ...

