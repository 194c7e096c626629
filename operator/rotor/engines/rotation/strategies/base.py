"""What every rotation strategy does, and the shared part: the new value goes out as a KV version.

A strategy captures what readers use now, publishes a new value, revokes the old one and rolls back,
each against a backend handle (rotor.backends.protocols) bound to the policy's identity. Every
action is safe to repeat after a crash: publish adopts its own earlier write, revoke checks whether
it already happened.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import ClassVar, Protocol

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.backends.protocols import InvalidSpec, SecretHandle, VersionConflict, VersionStore

Clock = Callable[[], datetime.datetime]
Values = dict[str, str]  # what status.rotation.old/new and status.active hold: references, never values


class Strategy(Protocol):
    """One way to rotate (status.rotation.old/new are what these return)."""

    async def capture(self, active: Mapping[str, str]) -> Values:
        """What readers use now (ACTIVE: status.active from the last rotation)."""
        ...

    async def publish(self, old: Mapping[str, str]) -> Values:
        """Publish a new value next to OLD; adopt our own publish if one happened before a crash."""
        ...

    async def adopt(self, old: Mapping[str, str], version: str, data: Mapping[str, str]) -> Values:
        """What our earlier publish of VERSION (holding DATA) made, without acting again."""
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


def one_ahead(latest: str | None, captured: str) -> bool:
    """LATEST is exactly one version after CAPTURED: the write of our own publish."""
    return latest is not None and int(latest) == int(captured) + 1


class KvStrategy:
    """A strategy whose new value is a new version of the KV secret (all of them, today). Subclasses
    make the new value (publish_new) and say what else revoke and rollback undo."""

    holds_leases: ClassVar[bool] = False  # each published version holds a lease (rotor_leases gauge)

    def __init__(self, spec: RotationPolicySpec, handle: SecretHandle, clock: Clock) -> None:
        self.spec, self.clock = spec, clock
        if not isinstance(handle, VersionStore):
            raise unable(handle, "write and destroy versions")
        self.store: VersionStore = handle

    @staticmethod
    def due(spec: RotationPolicySpec, active: Mapping[str, str], now: datetime.datetime) -> datetime.datetime | None:
        """When this strategy needs a rotation whatever the schedule says (None: never)."""
        return None

    @property
    def keep(self) -> int:
        """KV versions kept after a rotation (older ones are destroyed)."""
        return 1

    async def capture(self, active: Mapping[str, str]) -> Values:
        _, version = await self.store.read_version()
        return {"version": version or "0"}

    async def publish(self, old: Mapping[str, str]) -> Values:
        data, latest = await self.store.read_version()
        if latest is not None and one_ahead(latest, old["version"]):
            # Our own publish, done before a crash. Adopt it: publishing again would issue a lease or
            # set a password nobody records.
            return await self.adopt(old, latest, data)
        return await self.publish_new(old, data)

    async def publish_new(self, old: Mapping[str, str], data: Mapping[str, str]) -> Values:
        raise NotImplementedError

    async def adopt(self, old: Mapping[str, str], version: str, data: Mapping[str, str]) -> Values:
        return {"version": version}

    async def write(self, data: Mapping[str, str], cas: str) -> str:
        """Write DATA after version CAS. Our own earlier attempt (before a crash) may have written
        already: adopt it if it is exactly one version ahead; anything else is a concurrent writer."""
        try:
            return await self.store.write_version(data, cas)
        except VersionConflict:
            _, latest = await self.store.read_version()
            if latest is not None and one_ahead(latest, cas):
                return latest
            raise

    async def revoke(self, old: Mapping[str, str], new: Mapping[str, str], since: datetime.datetime | None) -> None:
        await self.revoke_old(old, since)
        versions = await self.store.list_versions()
        await self.store.destroy_versions(versions[:-self.keep])

    async def revoke_old(self, old: Mapping[str, str], since: datetime.datetime | None) -> None:
        """Beyond destroying old versions: make the old value stop working (idempotent)."""

    async def rollback(self, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        _, latest = await self.store.read_version()
        if latest is not None and latest == new.get("version") and old.get("version") not in (None, "0"):
            previous, _ = await self.store.read_version(old["version"])
            await self.write(previous, latest)
        await self.rollback_new(new)
        if new.get("version"):
            await self.store.destroy_versions([new["version"]])

    async def rollback_new(self, new: Mapping[str, str]) -> None:
        """Beyond destroying the new version: make the new value stop working."""
