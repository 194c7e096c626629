"""Dynamic leases as Rotor records them: the lease id behind a KV version, and how a lease is shown.

Rotation writes the lease id into the secret's custom metadata under `lease_key(version)`; an
incident reads it back to revoke exactly the leaked lease. Status and logs only ever show its
fingerprint.
"""

from __future__ import annotations

import hashlib
from typing import Final

LEASE_META: Final = "rotor-lease-"  # custom metadata key prefix holding the lease id behind a version


def lease_key(version: str) -> str:
    """The custom metadata key holding the lease id behind VERSION."""
    return f"{LEASE_META}{version}"


def fingerprint(lease_id: str) -> str:
    """How a lease appears in status and logs: a short digest, never the id itself."""
    return "sha256:" + hashlib.sha256(lease_id.encode()).hexdigest()[:16]
