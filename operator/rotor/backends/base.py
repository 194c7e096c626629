"""The backend protocol: one small typed interface every secret backend implements."""

from __future__ import annotations

from typing import ClassVar, Protocol

from rotor.api.secretsource import SecretSourceSpec
from rotor.planning.sync import Fetched


class BackendError(Exception):
    """A failure with a status reason. Messages name paths, roles and codes, never values."""

    reason: ClassVar[str] = "BackendUnavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(BackendError):
    reason = "NotFound"


class PermissionDenied(BackendError):
    reason = "PermissionDenied"


class Unavailable(BackendError):
    reason = "BackendUnavailable"


class InvalidSpec(BackendError):
    reason = "InvalidSpec"


class VersionConflict(BackendError):
    """A check-and-set write lost: someone (or our own earlier attempt) wrote first."""

    reason = "Conflict"


class Backend(Protocol):
    """Reads the secret a SecretSource names, as the identity the SecretSource names."""

    provider: ClassVar[str]

    async def fetch(self, namespace: str, spec: SecretSourceSpec) -> Fetched: ...

    def describe(self, namespace: str, spec: SecretSourceSpec) -> str:
        """Where the secret lives, for status and inventory (e.g. 'vault:default/secret/app/db')."""
        ...

    async def close(self) -> None: ...
