"""Overlap with two static roles (blue/green): for systems with one password per user. The backend sets
a new password for the standby role, whose credentials become the next version; once readers moved,
the formerly active role gets a fresh password too, so whatever readers cached stops working."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.backends.protocols import SecretHandle, StaticCredentials
from rotor.engines.rotation.strategies.base import Clock, KvStrategy, Values, unable


class StaticRolePair(KvStrategy):
    def __init__(self, spec: RotationPolicySpec, handle: SecretHandle, clock: Clock) -> None:
        super().__init__(spec, handle, clock)
        if not isinstance(handle, StaticCredentials):
            raise unable(handle, "rotate a static credential")
        self.roles: StaticCredentials = handle
        self.mount = spec.overlap.mount
        self.blue, self.green = spec.overlap.static_roles

    def _other(self, role: str | None) -> str:
        return self.green if role == self.blue else self.blue

    async def capture(self, active: Mapping[str, str]) -> Values:
        old = await super().capture(active)
        old["role"] = active.get("role") or await self._active_role()
        return old

    async def _active_role(self) -> str:
        """Before the first rotation: the role whose user the secret holds now."""
        data, _ = await self.store.read_version()
        creds = await self.roles.static_credentials(self.mount, self.blue)
        return self.blue if data.get("username") == creds["username"] else self.green

    async def publish_new(self, old: Mapping[str, str], data: Mapping[str, str], cas: str,
                          marks: Mapping[str, str], rotation_id: str) -> Values:
        role = self._other(old.get("role"))
        await self.mark(cas, rotation_id)
        await self.roles.rotate_static(self.mount, role)
        creds = await self.roles.static_credentials(self.mount, role)
        return {"version": await self.write({**data, **creds}, cas), "role": role}

    async def adopt(self, old: Mapping[str, str], version: str, data: Mapping[str, str], marks: Mapping[str, str],
                    rotation_id: str) -> Values:
        return {"version": version, "role": self._other(old.get("role"))}

    async def revoke_old(self, old: Mapping[str, str], since: datetime.datetime | None) -> None:
        """A fresh password for the old role's user, unless the backend set one since Revoking began
        (our own revoke before a crash). Compared on the backend's clock: SINCE (Rotor's clock) is moved
        by the offset between the clocks measured now, so skew cannot make a revoke look done, or a done
        one look undone. (A password the backend set on its own schedule in between counts as done: it
        too stops what readers cached.)"""
        if since is not None:
            last = await self.roles.static_last_rotation(self.mount, old["role"])
            offset = await self.roles.backend_time() - self.clock()
            if last is not None and last >= since + offset:
                return
        await self.roles.rotate_static(self.mount, old["role"])

    async def rollback_new(self, new: Mapping[str, str]) -> None:
        if new.get("role"):
            await self.roles.rotate_static(self.mount, new["role"])

