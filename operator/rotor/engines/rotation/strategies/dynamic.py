"""Dynamic: per-lease credentials. Each rotation issues a new lease and writes its credentials as the
next version; revoking the old value revokes the lease behind the old version. Between rotations the
held leases are renewed at spec.dynamic.renewFraction of their TTL, and a new one is issued (a
rotation) before the held one reaches its max TTL.

A lease is recorded (its id in the secret's custom metadata, planning.leases) before its credentials
go anywhere, and is issued so that it dies within a short grace unless Rotor then holds it (the
backend's LeaseIssuer.issue_lease/hold_lease): a crash between issuing and recording leaves no lease
that lives on unknown. Its times in status are on the backend's clock.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import ClassVar

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.backends.protocols import InvalidSpec, LeaseIssuer, NotFound, SecretHandle, VersionConflict
from rotor.engines.rotation.faults import fault_point
from rotor.engines.rotation.strategies.base import Clock, KvStrategy, Values, unable
from rotor.planning import times
from rotor.planning.leases import (
    LONGEST_TOKEN,
    fingerprint,
    lease_due,
    lease_ids,
    lease_key,
    next_version,
    rotation_key,
)


class Dynamic(KvStrategy):
    holds_leases: ClassVar[bool] = True

    def __init__(self, spec: RotationPolicySpec, handle: SecretHandle, clock: Clock) -> None:
        super().__init__(spec, handle, clock)
        if spec.dynamic is None:
            raise InvalidSpec("strategy dynamic needs spec.dynamic.role")
        if not isinstance(handle, LeaseIssuer):
            raise unable(handle, "issue or revoke leases")
        self.leases: LeaseIssuer = handle
        self.mount, self.role = spec.dynamic.mount, spec.dynamic.role

    @staticmethod
    def due(spec: RotationPolicySpec, active: Mapping[str, str], now: datetime.datetime) -> datetime.datetime | None:
        return lease_due(spec, active, now)

    async def backend_now(self) -> datetime.datetime:
        return await self.leases.backend_time()

    async def capture(self, active: Mapping[str, str]) -> Values:
        old = await super().capture(active)
        if active.get("lease"):
            old["lease"] = active["lease"]
        return old

    async def publish_new(self, old: Mapping[str, str], data: Mapping[str, str], cas: str,
                          marks: Mapping[str, str], rotation_id: str) -> Values:
        after = next_version(cas)
        # A lease an earlier attempt recorded for this version but never wrote out: nobody holds it.
        await self._revoke_id(marks.get(lease_key(after)))
        now = await self.leases.backend_time()  # before issuing: the lease's times are no later than recorded
        lease = await self.leases.issue_lease(self.mount, self.role)
        fault_point("Publishing", "issued")
        await self.mark(cas, rotation_id, {lease_key(after): lease.lease_id})
        _, max_ttl = await self.leases.lease_role_ttl(self.mount, self.role)
        lives = await self.leases.hold_lease(lease, max_ttl or LONGEST_TOKEN)
        try:
            version = await self.write({**data, **lease.data}, cas)
        except VersionConflict:  # someone wrote first; this lease was never published
            await self.leases.revoke_lease(lease.lease_id)
            if (await self.store.custom_metadata()).get(lease_key(after)) == lease.lease_id:
                await self.store.set_custom_metadata({lease_key(after): "", rotation_key(after): ""})
            raise
        return self._held(version, lease.lease_id, now, lease.ttl,
                          now + datetime.timedelta(seconds=min(max_ttl or lives, lives)))

    async def adopt(self, old: Mapping[str, str], version: str, data: Mapping[str, str], marks: Mapping[str, str],
                    rotation_id: str) -> Values:
        lease_id = marks.get(lease_key(version), "")
        if not lease_id:
            return {"version": version, "lease": ""}
        try:
            ttl = await self.leases.renew_lease(lease_id)  # its TTL from now, as the backend counts it
        except NotFound:
            # It ran out while nobody renewed it (Rotor was down longer than its TTL): publish anew.
            return await self.publish_new(old, data, version, marks, rotation_id)
        now = await self.leases.backend_time()
        _, max_ttl = await self.leases.lease_role_ttl(self.mount, self.role)
        issued = await self.store.version_created(version) or now
        return self._held(version, lease_id, now, ttl,
                          issued + datetime.timedelta(seconds=max_ttl or LONGEST_TOKEN))

    @staticmethod
    def _held(version: str, lease_id: str, now: datetime.datetime, ttl: int,
              max_expires: datetime.datetime) -> Values:
        """status for VERSION: the lease as a fingerprint, its times (the backend's clock) and TTL."""
        expires = min(now + datetime.timedelta(seconds=ttl), max_expires)
        return {"version": version, "lease": fingerprint(lease_id), "leaseExpires": times.iso(expires),
                "leaseMaxExpires": times.iso(max_expires), "leaseTtl": str(ttl)}

    async def renew(self, held: Mapping[str, str]) -> Values:
        """Renew the lease behind HELD's version: its new times (ended now, when it is gone)."""
        lease_id = (await self.store.custom_metadata()).get(lease_key(held.get("version") or ""))
        now = await self.leases.backend_time()
        ended = {"leaseExpires": times.iso(now), "leaseMaxExpires": times.iso(now)}
        if not lease_id:
            return ended  # revoked (an incident) and forgotten
        try:
            ttl = await self.leases.renew_lease(lease_id)
        except NotFound:
            return ended
        expires = times.iso(now + datetime.timedelta(seconds=ttl))
        if not held.get("leaseTtl"):  # recorded before renewals were: the TTL it renews by from now on
            return {"leaseExpires": expires, "leaseTtl": str(ttl)}
        if ttl < int(held["leaseTtl"]):  # capped: it ends at its max TTL, now known exactly
            return {"leaseExpires": expires, "leaseMaxExpires": min(expires, held.get("leaseMaxExpires") or expires)}
        return {"leaseExpires": expires}

    async def revoke_old(self, old: Mapping[str, str], since: datetime.datetime | None) -> None:
        await self._revoke_lease(old.get("version"))

    async def rollback_new(self, new: Mapping[str, str]) -> None:
        await self._revoke_lease(new.get("version"))

    async def release(self) -> int:
        """Revoke every lease recorded for this secret and forget them (the policy is being deleted);
        how many were revoked."""
        recorded = lease_ids(await self.store.custom_metadata())
        revoked = 0
        for lease_id in recorded.values():
            revoked += await self._revoke_id(lease_id)
        if recorded:
            await self.store.set_custom_metadata({lease_key(version): "" for version in recorded})
        return revoked

    async def _revoke_lease(self, version: str | None) -> None:
        """Revoke the lease recorded behind VERSION, then forget it (a second call finds none)."""
        if not version:
            return
        lease_id = (await self.store.custom_metadata()).get(lease_key(version))
        if lease_id:
            await self._revoke_id(lease_id)
            await self.store.set_custom_metadata({lease_key(version): ""})

    async def _revoke_id(self, lease_id: str | None) -> int:
        if lease_id and await self.leases.lease_alive(lease_id):
            await self.leases.revoke_lease(lease_id)
            return 1
        return 0
