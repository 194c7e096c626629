"""Transit: a Vault Transit key rotated in place (spec.transit). Publishing makes a new key version,
which new signatures and ciphertexts use at once; readers work through Vault, so there is nothing to
deliver (planning.transit.delivers). The old versions keep decrypting and verifying through the
overlap window; Revoking raises the key's minimum decryption and encryption versions to the new one.

An exportable key can be delivered (spec.transit.export): Publishing also writes the key material of
every version in use (old and new) into the SecretSource's secret as a new KV version, which the
Secret then holds, and readers roll as for any rotation. Revoking raises the minimums, writes a KV
version holding only the versions still in use, and destroys the older KV versions (they hold retired
key material).

Crash safety: the version readers used is recorded in status (rotation.old) before Publishing acts, so
a version after it found on a second attempt is adopted, not rotated again. What a KV version holds is
a function of the key's versions, so a delivery found done is not written again. Revoking only raises
the minimums (never lowers one), so repeating it is a no-op; a rollback lowers nothing either: it comes
before Revoking, which is the only step that raised anything (an exported key's Secret gets the old
versions back).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.backends.protocols import InvalidSpec, KeyRing, KeyVersions, NotFound, SecretHandle, VersionStore
from rotor.engines.rotation.faults import fault_point
from rotor.engines.rotation.strategies.base import Clock, KvStrategy, Values, unable
from rotor.planning.transit import (
    delivered_versions,
    delivery_data,
    holds,
    key_values,
    published,
    raised,
    version_of,
    versions_in,
)


class Transit(KvStrategy):
    """Registered next to the KV strategies (strategy_class); it overrides every step. Without an
    export it uses no KV version of the SecretSource's secret (the source names the Vault connection and
    identity); with one, that secret carries the exported versions."""

    def __init__(self, spec: RotationPolicySpec, handle: SecretHandle, clock: Clock) -> None:
        self.spec, self.clock = spec, clock
        if spec.transit is None:
            raise InvalidSpec("strategy transit needs spec.transit.key")
        if not isinstance(handle, KeyRing):
            raise unable(handle, "rotate a Transit key")
        self.keys: KeyRing = handle
        self.mount, self.key, self.export = spec.transit.mount, spec.transit.key, spec.transit.export
        if self.export is not None:
            if not isinstance(handle, VersionStore):
                raise unable(handle, "write and destroy versions")
            self.store = handle

    def _values(self, versions: KeyVersions, delivered: list[int] | None = None, kv: str | None = None) -> Values:
        return key_values(self.mount, self.key, versions.latest, versions.min_decryption, versions.min_encryption,
                          delivered or (), kv if self.export is not None else None, versions.latest_created)

    async def _versions(self) -> KeyVersions:
        try:
            return await self.keys.key_versions(self.mount, self.key)
        except NotFound as err:
            raise NotFound(f"spec.transit.key: {err.message}") from None

    async def capture(self, active: Mapping[str, str]) -> Values:
        versions = await self._versions()
        if self.export is None:
            return self._values(versions)
        if not self.spec.dry_run:  # a key that cannot be exported is found before it is rotated
            await self._export(versions.latest)
        data, kv = await self.store.read_version()
        return self._values(versions, versions_in(data, self.export.prefix), kv or "0")

    async def _export(self, version: int) -> str:
        assert self.export is not None
        try:
            return await self.keys.export_key(self.mount, self.key, self.export.type, version)
        except InvalidSpec as err:
            raise InvalidSpec(f"spec.transit.export: {err.message} (the key needs exportable=true, or use type "
                              "public-key)") from None

    async def publish(self, old: Mapping[str, str], rotation_id: str) -> Values:
        """A new key version (or the one already made after OLD's). status.rotation.new records it with the
        minimums the key will have once the old versions are revoked (and, exported, the KV version
        delivering the old and new versions)."""
        versions = await self._versions()
        if not published(old, versions.latest):
            await self.keys.rotate_key(self.mount, self.key)
            fault_point("Publishing", "rotated")
            versions = await self._versions()
        minimums = raised(versions.min_decryption, versions.min_encryption, versions.latest)
        decryption, encryption = minimums or (versions.min_decryption, versions.min_encryption)
        after = KeyVersions(versions.latest, decryption, encryption, versions.latest_created)
        if self.export is None:
            return self._values(after)
        delivered, kv = await self.deliver(delivered_versions(versions.latest, versions.min_decryption))
        return self._values(after, delivered, kv)

    async def deliver(self, wanted: list[int]) -> tuple[list[int], str]:
        """A KV version holding exactly the key versions WANTED (exported now), unless the latest one
        already does; (WANTED, that KV version)."""
        assert self.export is not None
        data, kv = await self.store.read_version()
        if kv is not None and holds(data, self.export.prefix, wanted):
            return wanted, kv
        materials = {v: await self._export(v) for v in wanted}
        return wanted, await self.write(delivery_data(data, self.export.prefix, materials), kv or "0")

    async def revoke(self, old: Mapping[str, str], new: Mapping[str, str], since: datetime.datetime | None) -> None:
        """Versions before the new one stop decrypting, verifying, encrypting and signing (and, exported,
        leave the Secret: older KV versions, which hold them, are destroyed)."""
        target = version_of(new)
        if not target:
            return
        versions = await self._versions()
        minimums = raised(versions.min_decryption, versions.min_encryption, target)
        if minimums is not None:
            await self.keys.set_min_versions(self.mount, self.key, decryption=minimums[0], encryption=minimums[1])
            fault_point("Revoking", "raised")
            versions = await self._versions()
        if self.export is not None:
            await self.deliver(delivered_versions(versions.latest, versions.min_decryption))
            alive = await self.store.list_versions()
            await self.store.destroy_versions(alive[:-1])

    async def rollback(self, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        """No minimum was raised before Revoking, and a key version cannot be unmade (the old versions still
        decrypt and verify; new signatures and ciphertexts stay readable too). An exported key's Secret
        gets back the versions readers used; the KV version holding the new one is destroyed."""
        if self.export is None:
            return
        versions = await self._versions()  # a leak response may have retired the old versions meanwhile
        floor = max(version_of(old, "minDecryptionVersion"), versions.min_decryption)
        wanted = delivered_versions(version_of(old), floor) or delivered_versions(versions.latest, floor)
        _, kv = await self.deliver(wanted)
        if new.get("version") and new["version"] != kv:
            await self.store.destroy_versions([new["version"]])
