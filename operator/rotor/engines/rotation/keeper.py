"""Dynamic leases outside the rotation steps: renewed at spec.dynamic.renewFraction of their TTL while
readers may hold them (between rotations and during one), and revoked when their policy is deleted
(Rotor's cleanup finalizer holds the deletion until they are).

Lease times are the backend's; Rotor's clock is moved onto the backend's by an offset measured
(sys/health's Date) every few minutes, so a replica whose clock is off renews in time all the same.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from rotor.api import keys
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.engines.rotation.fence import StatusFence
from rotor.engines.rotation.strategies import Dynamic
from rotor.engines.rotation.view import Key, PolicyState
from rotor.planning.leases import NEVER, held_leases, renew_at

log = logging.getLogger("rotor.engines.rotation.keeper")
OFFSET_FOR = datetime.timedelta(minutes=5)  # how long a measured clock offset is trusted
IDLE_RECHECK = 3600.0
SOONEST = 0.5  # seconds: never wake more often for a renewal


class LeaseKeeper:
    def __init__(self, fence: StatusFence, clock: Callable[[], datetime.datetime]) -> None:
        self.fence, self.clock = fence, clock
        self._offsets: dict[Key, tuple[datetime.timedelta, datetime.datetime]] = {}

    def forget(self, key: Key) -> None:
        self._offsets.pop(key, None)

    def known_offset(self, key: Key) -> datetime.timedelta:
        found = self._offsets.get(key)
        return found[0] if found is not None else datetime.timedelta(0)

    async def offset(self, key: Key, strategy: Dynamic) -> datetime.timedelta:
        """The backend's clock minus Rotor's (measured again after OFFSET_FOR)."""
        now = self.clock()
        found = self._offsets.get(key)
        if found is None or abs(now - found[1]) > OFFSET_FOR:
            found = (await strategy.backend_now() - self.clock(), now)
            self._offsets[key] = found
        return found[0]

    async def hold(self, state: PolicyState) -> None:
        """Rotor's cleanup finalizer is on the policy before it holds any lease (added now if missing)."""
        if keys.CLEANUP_FINALIZER not in state.finalizers:
            await self.fence.set_finalizers(state, (*state.finalizers, keys.CLEANUP_FINALIZER))

    async def renew(self, state: PolicyState, spec: RotationPolicySpec, strategy: Dynamic,
                    backend_now: datetime.datetime) -> float:
        """Renew the held leases that are due (BACKEND_NOW: the backend's clock); seconds until the next."""
        held = held_leases(state.status)
        patch: dict[str, Any] = {}
        for where, values in held.items():
            if renew_at(spec, values) > backend_now:
                continue
            update = await strategy.renew(values)
            held[where] = {**values, **update}
            log.debug("rotation %s/%s: renewed the %s lease %s until %s", state.namespace, state.name, where,
                      values.get("lease"), update.get("leaseExpires"))
            if where == "active":
                patch["active"] = update
            else:
                patch["rotation"] = {"new": update}
        if patch:
            await self.fence.write(state, patch)
        soonest = min((renew_at(spec, values) for values in held.values()), default=NEVER)
        if soonest >= NEVER:
            return IDLE_RECHECK
        return max(SOONEST, (soonest - backend_now).total_seconds())

    async def release(self, state: PolicyState, strategy: Dynamic | None) -> None:
        """The policy is being deleted: revoke every lease recorded for its secret, then let it go."""
        if keys.CLEANUP_FINALIZER not in state.finalizers:
            return
        if strategy is not None:
            revoked = await strategy.release()
            log.info("rotation %s/%s deleted: revoked %d lease(s)", state.namespace, state.name, revoked)
        elif state.spec is not None and state.spec.strategy == "dynamic":  # its SecretSource is gone
            log.warning("rotation %s/%s deleted without its SecretSource: its leases are not renewed and end at "
                        "their TTL", state.namespace, state.name)
        await self.fence.set_finalizers(state, [f for f in state.finalizers if f != keys.CLEANUP_FINALIZER])
