"""Transit: a Vault Transit key rotated in place (spec.transit). Publishing makes a new key version,
which new signatures and ciphertexts use at once; readers work through Vault, so there is nothing to
deliver (planning.transit.delivers). The old versions keep decrypting and verifying through the
overlap window; Revoking raises the key's minimum decryption and encryption versions to the new one.

Crash safety: the version readers used is recorded in status (rotation.old) before Publishing acts, so
a version after it found on a second attempt is adopted, not rotated again. Revoking only raises the
minimums (never lowers one), so repeating it is a no-op; a rollback lowers nothing either: it comes
before Revoking, which is the only step that raised anything.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.backends.protocols import InvalidSpec, KeyRing, KeyVersions, NotFound, SecretHandle
from rotor.engines.rotation.faults import fault_point
from rotor.engines.rotation.strategies.base import Clock, KvStrategy, Values, unable
from rotor.planning.transit import key_values, published, raised, version_of


class Transit(KvStrategy):
    """Registered next to the KV strategies (strategy_class); it overrides every step and uses no KV
    version of the SecretSource's secret (the source names the Vault connection and identity)."""

    def __init__(self, spec: RotationPolicySpec, handle: SecretHandle, clock: Clock) -> None:
        self.spec, self.clock = spec, clock
        if spec.transit is None:
            raise InvalidSpec("strategy transit needs spec.transit.key")
        if not isinstance(handle, KeyRing):
            raise unable(handle, "rotate a Transit key")
        self.keys: KeyRing = handle
        self.mount, self.key = spec.transit.mount, spec.transit.key

    def _values(self, versions: KeyVersions) -> Values:
        return key_values(self.mount, self.key, versions.latest, versions.min_decryption, versions.min_encryption)

    async def _versions(self) -> KeyVersions:
        try:
            return await self.keys.key_versions(self.mount, self.key)
        except NotFound as err:
            raise NotFound(f"spec.transit.key: {err.message}") from None

    async def capture(self, active: Mapping[str, str]) -> Values:
        return self._values(await self._versions())

    async def publish(self, old: Mapping[str, str], rotation_id: str) -> Values:
        """A new key version (or the one already made after OLD's). status.rotation.new records it with the
        minimums the key will have once the old versions are revoked."""
        versions = await self._versions()
        if not published(old, versions.latest):
            await self.keys.rotate_key(self.mount, self.key)
            fault_point("Publishing", "rotated")
            versions = await self._versions()
        minimums = raised(versions.min_decryption, versions.min_encryption, versions.latest)
        decryption, encryption = minimums or (versions.min_decryption, versions.min_encryption)
        return self._values(KeyVersions(versions.latest, decryption, encryption))

    async def revoke(self, old: Mapping[str, str], new: Mapping[str, str], since: datetime.datetime | None) -> None:
        """Versions before the new one stop decrypting, verifying, encrypting and signing."""
        target = version_of(new)
        if not target:
            return
        versions = await self._versions()
        minimums = raised(versions.min_decryption, versions.min_encryption, target)
        if minimums is not None:
            await self.keys.set_min_versions(self.mount, self.key, decryption=minimums[0], encryption=minimums[1])

    async def rollback(self, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        """Nothing to undo: no minimum was raised before Revoking, and a key version cannot be unmade (the
        old versions still decrypt and verify; new signatures and ciphertexts stay readable too)."""
