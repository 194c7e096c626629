"""What Rotor records in a secret's custom metadata, and when dynamic leases are renewed or replaced.

Rotation writes, per KV version it publishes, the rotation's id under `rotation_key(version)` (only
versions carrying the id of the rotation in progress are adopted after a crash: a version someone
else wrote never is) and, for dynamic credentials, the lease id under `lease_key(version)`; an
incident reads the lease id back to revoke exactly the leaked lease. Status and logs only ever show
a lease's fingerprint.

Lease times in status (leaseExpires, leaseMaxExpires) are on the backend's clock, and every decision
here compares them with the backend's clock now: a replica whose own clock is off cannot renew late.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from rotor.api.common import parse_duration
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.planning import times

LEASE_META: Final = "rotor-lease-"  # custom metadata key prefix holding the lease id behind a version
ROTATION_META: Final = "rotor-rotation-"  # ... holding the id of the rotation that wrote a version
NEVER = datetime.datetime.max.replace(tzinfo=datetime.UTC)
# Replace a lease at least this long before its max TTL, however short the overlap window: the new one
# must be issued, delivered and read while the old one still works.
REISSUE_AT_LEAST = datetime.timedelta(seconds=10)
# Phases in which status.rotation.new names a lease readers may hold (published, not yet rolled back).
NEW_HELD: Final = frozenset({"Propagating", "Verifying", "Overlapping", "Revoking", "Failed"})
LONGEST_TOKEN = 32 * 86400  # seconds asked for a lease's token when its role names no max TTL (Vault's default max)


def lease_key(version: str) -> str:
    """The custom metadata key holding the lease id behind VERSION."""
    return f"{LEASE_META}{version}"


def rotation_key(version: str) -> str:
    """The custom metadata key holding the id of the rotation that wrote VERSION."""
    return f"{ROTATION_META}{version}"


def next_version(version: str | None) -> str:
    """The version a check-and-set write after VERSION creates ("0" or None: the first)."""
    return str(int(version or 0) + 1)


def written_by(marks: Mapping[str, str], version: str | None, rotation_id: str) -> bool:
    """Whether VERSION was written by rotation ROTATION_ID (its mark says so)."""
    return version is not None and bool(rotation_id) and marks.get(rotation_key(version)) == rotation_id


def lease_ids(marks: Mapping[str, str]) -> dict[str, str]:
    """version -> lease id, for every lease recorded in MARKS."""
    return {key[len(LEASE_META):]: value for key, value in marks.items() if key.startswith(LEASE_META) and value}


def stale_marks(marks: Mapping[str, str], alive: Iterable[str]) -> dict[str, str]:
    """The rotation marks of versions no longer alive, as a metadata change removing them (lease ids
    are removed by whoever revokes their lease)."""
    keep = {rotation_key(v) for v in alive}
    return {key: "" for key in marks if key.startswith(ROTATION_META) and key not in keep}


def fingerprint(lease_id: str) -> str:
    """How a lease appears in status and logs: a short digest, never the id itself."""
    return "sha256:" + hashlib.sha256(lease_id.encode()).hexdigest()[:16]


def lease_times(now: datetime.datetime, ttl: int, max_seconds: int) -> dict[str, str]:
    """status fields of a lease renewed (or issued) at NOW (the backend's clock) for TTL seconds, which
    can live MAX_SECONDS from NOW at most."""
    return {"leaseExpires": times.iso(now + datetime.timedelta(seconds=ttl)),
            "leaseMaxExpires": times.iso(now + datetime.timedelta(seconds=max_seconds)),
            "leaseTtl": str(ttl)}


def held_leases(status: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The leases readers may hold, by where status keeps them: "active" (what readers used until the
    rotation in progress completes) and "new" (published by it and not rolled back)."""
    held: dict[str, dict[str, str]] = {}
    active = status.get("active") or {}
    if active.get("lease") and active.get("version"):
        held["active"] = dict(active)
    new = (status.get("rotation") or {}).get("new") or {}
    if status.get("phase") in NEW_HELD and new.get("lease") and new.get("version") and \
            new.get("version") != active.get("version"):
        held["new"] = dict(new)
    return held


def renew_at(spec: RotationPolicySpec, held: Mapping[str, str]) -> datetime.datetime:
    """When a held lease is renewed: at spec.dynamic.renewFraction of its TTL (the backend's clock);
    at once when its TTL is not recorded (a status written before renewals were); NEVER once it
    cannot be extended."""
    expires = times.parse_optional(held.get("leaseExpires"))
    max_expires = times.parse_optional(held.get("leaseMaxExpires"))
    ttl = int(held.get("leaseTtl") or 0)
    if expires is not None and max_expires is not None and expires >= max_expires:
        return NEVER  # renewed up to its max TTL: only a new lease (a rotation) goes further
    if expires is None or ttl <= 0:
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)
    fraction = spec.dynamic.renew_fraction if spec.dynamic else 0.67
    return expires - datetime.timedelta(seconds=ttl * (1 - fraction))


def lease_due(spec: RotationPolicySpec, active: Mapping[str, str], now: datetime.datetime) -> datetime.datetime:
    """Dynamic leases: issue a new one (rotate) while the held one can still outlive twice the overlap
    window (and REISSUE_AT_LEAST); at once when none is held or it ran out. NEVER otherwise. NOW is the
    backend's clock."""
    expires = times.parse_optional(active.get("leaseExpires"))
    max_expires = times.parse_optional(active.get("leaseMaxExpires"))
    if expires is None or max_expires is None:
        return now if not active else NEVER
    if expires <= now or max_expires - now <= max(parse_duration(spec.overlap.window) * 2, REISSUE_AT_LEAST):
        return now
    return NEVER
