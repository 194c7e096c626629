"""Dynamic: per-lease credentials. Each rotation issues a new lease, writes its credentials as the next
version and records the lease id behind that version in the secret's custom metadata (planning.leases);
revoking the old value revokes the lease behind the old version. Rotates again before the held lease
reaches its max TTL."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import ClassVar

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.backends.protocols import InvalidSpec, LeaseIssuer, SecretHandle
from rotor.engines.rotation.strategies.base import Clock, KvStrategy, Values, unable
from rotor.planning import times
from rotor.planning.leases import fingerprint, lease_key
from rotor.planning.rotation import lease_due

UNKNOWN_TTL = 3600  # seconds assumed when adopting a lease whose role reports no TTL


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

    async def capture(self, active: Mapping[str, str]) -> Values:
        old = await super().capture(active)
        if active.get("lease"):
            old["lease"] = active["lease"]
        return old

    async def publish_new(self, old: Mapping[str, str], data: Mapping[str, str]) -> Values:
        lease = await self.leases.issue_lease(self.mount, self.role)
        version = await self.write({**data, **lease.data}, old["version"])
        await self.store.set_custom_metadata({lease_key(version): lease.lease_id})
        now = self.clock()
        _, max_ttl = await self.leases.lease_role_ttl(self.mount, self.role)
        return self._held(version, lease.lease_id, now, lease.ttl, max_ttl or lease.ttl)

    async def adopt(self, old: Mapping[str, str], version: str, data: Mapping[str, str]) -> Values:
        lease_id = (await self.store.custom_metadata()).get(lease_key(version), "")
        ttl, max_ttl = await self.leases.lease_role_ttl(self.mount, self.role)
        return self._held(version, lease_id, self.clock(), ttl or UNKNOWN_TTL, max_ttl or ttl or UNKNOWN_TTL)

    @staticmethod
    def _held(version: str, lease_id: str, now: datetime.datetime, ttl: int, max_ttl: int) -> Values:
        """status.rotation.new for VERSION: the lease as a fingerprint ("" when unknown) and its times."""
        return {"version": version, "lease": fingerprint(lease_id) if lease_id else "",
                "leaseExpires": times.iso(now + datetime.timedelta(seconds=ttl)),
                "leaseMaxExpires": times.iso(now + datetime.timedelta(seconds=max_ttl))}

    async def revoke_old(self, old: Mapping[str, str], since: datetime.datetime | None) -> None:
        await self._revoke_lease(old.get("version"))

    async def rollback_new(self, new: Mapping[str, str]) -> None:
        await self._revoke_lease(new.get("version"))

    async def _revoke_lease(self, version: str | None) -> None:
        """Revoke the lease recorded behind VERSION, then forget it (a second call finds none)."""
        if not version:
            return
        lease_id = (await self.store.custom_metadata()).get(lease_key(version))
        if lease_id:
            if await self.leases.lease_alive(lease_id):
                await self.leases.revoke_lease(lease_id)
            await self.store.set_custom_metadata({lease_key(version): ""})
