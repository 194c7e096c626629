"""What every rotation strategy does, and the shared part: the new value goes out as a KV version.

A strategy captures what readers use now, publishes a new value, revokes the old one and rolls back,
each against a backend handle (rotor.backends.protocols) bound to the policy's identity. Every
action is safe to repeat after a crash: publish marks the version it is about to write with the
rotation's id (planning.leases.rotation_key) and adopts a version so marked instead of publishing
again; a version anyone else wrote is never adopted (a new value goes on top of it). Revoke checks
whether it already happened. On a store with staging labels (StagedVersions: AWS Secrets Manager) the
version's id is derived from the rotation's id instead of marked, readers are moved to it before it is
made current (follow), and publish, revoke and rollback move labels (staged.py).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.backends.protocols import InvalidSpec, SecretHandle, StagedVersions, VersionStore
from rotor.engines.ports import Sources, VersionPins
from rotor.engines.rotation.strategies import staged
from rotor.planning.leases import next_version, rotation_key, stale_marks, written_by

Clock = Callable[[], datetime.datetime]
Values = dict[str, str]  # what status.rotation.old/new and status.active hold: references, never values


class Strategy(Protocol):
    """One way to rotate (status.rotation.old/new are what these return)."""

    async def capture(self, active: Mapping[str, str]) -> Values:
        """What readers use now (ACTIVE: status.active from the last rotation)."""
        ...

    async def publish(self, old: Mapping[str, str], rotation_id: str) -> Values:
        """Publish a new value next to OLD for rotation ROTATION_ID; adopt the version this rotation
        wrote before a crash instead, if there is one."""
        ...

    async def revoke(self, old: Mapping[str, str], new: Mapping[str, str], since: datetime.datetime | None) -> None:
        """The old value stops working (once, however often it is asked: SINCE is when Revoking began)."""
        ...

    async def rollback(self, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        """Readers get the old value back; the new one stops working."""
        ...


def unable(handle: SecretHandle, what: str) -> InvalidSpec:
    """The error for a handle lacking a capability protocol (planning.capabilities checks specs against
    what the backend declares first, so this means a backend that declares more than it implements)."""
    return InvalidSpec(f"{handle.where}: the backend cannot {what}")


class KvStrategy:
    """A strategy whose new value is a new version of the KV secret (all of them, today). Subclasses
    make the new value (publish_new) and say what else revoke and rollback undo."""

    holds_leases: ClassVar[bool] = False  # each published version holds a lease (rotor_leases gauge)

    def __init__(self, spec: RotationPolicySpec, handle: SecretHandle, clock: Clock) -> None:
        self.spec, self.clock = spec, clock
        if not isinstance(handle, VersionStore):
            raise unable(handle, "write and destroy versions")
        self.store: VersionStore = handle
        self.pin = staged.Pin()

    def attach(self, sources: Sources, namespace: str, name: str) -> None:
        """The SecretSource engine and the source (NAMESPACE/NAME) whose readers a staged rotation moves."""
        if isinstance(sources, VersionPins):
            self.pin = staged.Pin(sources, namespace, name)

    async def follow(self, phase: str, new: Mapping[str, str]) -> None:
        """Keep readers on what PHASE gives them (a store with staging labels; elsewhere nothing to do)."""
        store = getattr(self, "store", None)  # Certificates has an issuer instead
        if isinstance(store, StagedVersions):
            await staged.follow(store, self.pin, phase, new)

    @staticmethod
    def due(spec: RotationPolicySpec, active: Mapping[str, str], now: datetime.datetime) -> datetime.datetime | None:
        """When this strategy needs a rotation whatever the schedule says (None: never). NOW is the
        backend's clock."""
        return None

    @staticmethod
    def observed(source_status: Mapping[str, Any]) -> dict[str, str]:
        """What due() needs of the SecretSource's status besides status.active (none, here)."""
        return {}

    @property
    def keep(self) -> int:
        """KV versions kept after a rotation (older ones are destroyed)."""
        return 1

    async def capture(self, active: Mapping[str, str]) -> Values:
        _, version = await self.store.read_version()
        return {"version": version or "0"}

    async def publish(self, old: Mapping[str, str], rotation_id: str) -> Values:
        if isinstance(self.store, StagedVersions):
            return await staged.publish(self.store, rotation_id, self.new_data)
        data, latest = await self.store.read_version()
        marks = await self.store.custom_metadata()
        if written_by(marks, latest, rotation_id):
            # Our own publish, done before a crash (or its answer lost). Adopt it: publishing again would
            # issue a lease or set a password nobody records.
            assert latest is not None
            return await self.adopt(old, latest, data, marks, rotation_id)
        return await self.publish_new(old, data, latest or "0", marks, rotation_id)

    async def publish_new(self, old: Mapping[str, str], data: Mapping[str, str], cas: str,
                          marks: Mapping[str, str], rotation_id: str) -> Values:
        """Write a new value as the version after CAS (the latest, whoever wrote it: DATA holds it)."""
        raise NotImplementedError

    def new_data(self, data: Mapping[str, str]) -> Mapping[str, str]:
        """The next version's data made from DATA, the current one's, by Rotor alone (a strategy whose
        value comes from elsewhere, a lease or a database role, cannot be staged)."""
        raise unable(self.store, f"stage a value of strategy {self.spec.strategy} with these settings")

    async def adopt(self, old: Mapping[str, str], version: str, data: Mapping[str, str], marks: Mapping[str, str],
                    rotation_id: str) -> Values:
        return {"version": version}

    async def mark(self, cas: str, rotation_id: str, also: Mapping[str, str] | None = None) -> None:
        """Record, before writing it, that the version after CAS is this rotation's."""
        await self.store.set_custom_metadata({rotation_key(next_version(cas)): rotation_id, **(also or {})})

    async def write(self, data: Mapping[str, str], cas: str) -> str:
        """Write DATA after version CAS (VersionConflict when someone wrote first: the next attempt reads
        again, and adopts that version only if it carries this rotation's mark)."""
        return await self.store.write_version(data, cas)

    async def revoke(self, old: Mapping[str, str], new: Mapping[str, str], since: datetime.datetime | None) -> None:
        await self.revoke_old(old, since)
        if isinstance(self.store, StagedVersions):
            await staged.retire(self.store, self.keep, self.pin, new)
            return
        versions = await self.store.list_versions()
        await self.store.destroy_versions(versions[:-self.keep])
        await self._forget_marks(versions[-self.keep:])

    async def revoke_old(self, old: Mapping[str, str], since: datetime.datetime | None) -> None:
        """Beyond destroying old versions: make the old value stop working (idempotent)."""

    async def rollback(self, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        if isinstance(self.store, StagedVersions):
            await staged.rollback(self.store, self.pin, old, new)
            await self.rollback_new(new)
            return
        _, latest = await self.store.read_version()
        if latest is not None and latest == new.get("version") and old.get("version") not in (None, "0"):
            previous, _ = await self.store.read_version(old["version"])
            await self.write(previous, latest)
        await self.rollback_new(new)
        if new.get("version"):
            await self.store.destroy_versions([new["version"]])
            await self._forget_marks(await self.store.list_versions())

    async def rollback_new(self, new: Mapping[str, str]) -> None:
        """Beyond destroying the new version: make the new value stop working."""

    async def _forget_marks(self, alive: list[str]) -> None:
        """Drop the rotation marks of versions no longer alive (custom metadata holds 64 keys at most)."""
        stale = stale_marks(await self.store.custom_metadata(), alive)
        if stale:
            await self.store.set_custom_metadata(stale)
