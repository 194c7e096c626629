"""Fencing: every status write of the rotation engine is guarded by the resourceVersion it read, and a
rotation in progress is carried on by one replica at a time.

A 409 means another writer moved the policy on: Rotor re-reads it and does not act on what it read
before. Which replica acts is planning.rotation.turn: the one whose write put the status where it is;
another takes over only after the status stayed unchanged for a while, by a guarded claim. So two
replicas that both believe they are active (an event-loop stall past the peering lifetime) still
rotate once. The answers to Rotor's writes also tell the API server's clock (managedFields times),
which stamps rollout failures.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rotor import GROUP, VERSION
from rotor.api import keys
from rotor.api.kinds import ROTATION_POLICY
from rotor.engines.rotation.view import Key, PolicyState, RotationView
from rotor.kube import Kube, KubeError
from rotor.planning import times
from rotor.planning.conditions import set_condition, status_unchanged
from rotor.planning.rotation import TAKEOVER, Turn, claim_message, stamped_at, status_mark, turn

log = logging.getLogger("rotor.engines.rotation.fence")
PLURAL = ROTATION_POLICY.plural


class Moved(Exception):
    """Another writer moved the policy on: it was read again; decide anew (the step is run again)."""


class StatusFence:
    def __init__(self, kube: Kube, view: RotationView, clock: Callable[[], datetime.datetime],
                 takeover: datetime.timedelta = TAKEOVER) -> None:
        self.kube, self.view, self.clock, self.takeover = kube, view, clock, takeover
        self._mine: dict[Key, tuple[str, ...]] = {}  # status_mark of this replica's last write that changed it
        # The resourceVersion the step in progress decided on (then its own writes'): the watch may
        # bring another writer's status in mid-step, and a write must not pass on the strength of it.
        self._basis: dict[Key, str | None] = {}
        self.kube_offset = datetime.timedelta(0)  # the API server's clock minus Rotor's, as last measured

    def forget(self, key: Key) -> None:
        self._mine.pop(key, None)
        self._basis.pop(key, None)

    def begin(self, state: PolicyState) -> None:
        """A step starts: what it decides, it decides on the policy as it is now."""
        self._basis[(state.namespace, state.name)] = state.resource_version

    def mine(self, state: PolicyState) -> bool:
        return self._mine.get((state.namespace, state.name)) == status_mark(state.status)

    def turn(self, state: PolicyState, now: datetime.datetime) -> tuple[Turn, float]:
        unchanged = now - (state.seen_since or now)
        return turn(state.status.get("phase"), self.mine(state), unchanged, self.takeover)

    async def claim(self, state: PolicyState, now: datetime.datetime) -> bool:
        """Take over a rotation whose status nobody changed for a while (Moved if another writer won)."""
        ready: Mapping[str, Any] = next((c for c in state.status.get("conditions") or ()
                                         if c.get("type") == keys.READY), {})
        phase = state.status.get("phase")
        log.warning("rotation %s/%s: no progress in %s for %ss; carrying it on", state.namespace, state.name,
                    phase, int(self.takeover.total_seconds()))
        return await self.write(state, {"conditions": self.ready(
            state, str(ready.get("status") or "True"), str(ready.get("reason") or phase), claim_message(phase, now))})

    def ready(self, state: PolicyState, status: str, reason: str, message: str) -> list[dict[str, Any]]:
        return set_condition(state.status.get("conditions") or [], type=keys.READY, status=status, reason=reason,
                             message=message, now=times.iso(self.clock()), generation=state.generation)

    async def write(self, state: PolicyState, patch: dict[str, Any]) -> bool:
        """Merge-patch the policy's status if it is still at the resourceVersion Rotor read. True when
        written (or there was nothing to write), False when the policy is gone; Moved when another writer
        moved it on (it is read again: decide anew, do not act on what was read before)."""
        patch = {"observedGeneration": state.generation, **patch}
        if status_unchanged(state.status, patch):
            return True
        key = (state.namespace, state.name)
        before, basis = status_mark(state.status), self._basis.get(key, state.resource_version)
        try:
            body = await self.kube.patch_status_guarded(PLURAL, state.namespace, state.name, patch, basis)
        except KubeError as err:
            if not err.conflict:
                raise
            log.info("rotation %s/%s: status moved on since resourceVersion %s (another writer); reading it "
                     "again", state.namespace, state.name, basis)
            await self.reread(state)
            raise Moved(basis) from None
        if body is None:
            return False
        self._basis[key] = (body.get("metadata") or {}).get("resourceVersion")
        stamp = stamped_at(body)
        if stamp is not None:
            self.kube_offset = stamp - self.clock()
        written = status_mark(dict(body.get("status") or {}))
        self.view.refresh(state, body)
        if written != before:
            self._mine[key] = written
        return True

    async def set_finalizers(self, state: PolicyState, finalizers: Sequence[str]) -> None:
        """Replace the policy's finalizers if it is still at the resourceVersion Rotor read (Moved after a
        conflict). Read back either way (the write answers with no object): the caller goes on with what
        it reads from the policy after this."""
        key = (state.namespace, state.name)
        basis = self._basis.get(key, state.resource_version)
        try:
            await self.kube.set_finalizers(PLURAL, state.namespace, state.name, finalizers, basis)
        except KubeError as err:
            if not (err.conflict or err.not_found):
                raise
            await self.reread(state)
            raise Moved(basis) from None
        await self.reread(state)
        # What the step decides from here on, it decides on the policy as read back.
        self._basis[key] = state.resource_version

    async def reread(self, state: PolicyState) -> None:
        """The policy as the API server has it now (listed: Rotor's RBAC has no get on policies)."""
        for body in await self.kube.list_objects(GROUP, VERSION, PLURAL, state.namespace):
            meta = body.get("metadata") or {}
            if meta.get("name") == state.name and meta.get("uid") == state.uid:
                self.view.refresh(state, body)
