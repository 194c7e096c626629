"""Transit keys of the in-memory FakeBackend (KeyRing), answering as Vault's Transit engine does:
versions are numbers, minimums are checked the way Vault's key config endpoint checks them."""

from __future__ import annotations

from dataclasses import dataclass

from rotor.backends.protocols import InvalidSpec, KeyVersions, NotFound


@dataclass
class FakeKey:
    latest: int = 1
    min_decryption: int = 1
    min_encryption: int = 0
    rotations: int = 0  # how often rotate_key made a version (crash tests count them)


class FakeTransitKeys:
    """Mixed into FakeSecret: its _key finds a key of the backend, recording the call."""

    def _key(self, operation: str, mount: str, key: str) -> FakeKey:
        raise NotImplementedError

    async def key_versions(self, mount: str, key: str) -> KeyVersions:
        found = self._key("transit-read", mount, key)
        return KeyVersions(found.latest, found.min_decryption, found.min_encryption)

    async def rotate_key(self, mount: str, key: str) -> int:
        found = self._key("transit-rotate", mount, key)
        found.latest += 1
        found.rotations += 1
        return found.latest

    async def set_min_versions(self, mount: str, key: str, *, decryption: int, encryption: int) -> None:
        found = self._key("transit-config", mount, key)
        where = f"{mount}/keys/{key}/config"
        if decryption > found.latest:  # Vault's own words (400)
            raise InvalidSpec(f"fake backend rejected transit-config {where} (400): cannot set min decryption "
                              f"version of {decryption}, latest key version is {found.latest}")
        if encryption > found.latest:
            raise InvalidSpec(f"fake backend rejected transit-config {where} (400): cannot set min encryption "
                              f"version of {encryption}, latest key version is {found.latest}")
        if encryption and encryption < max(decryption, 1):
            raise InvalidSpec(f"fake backend rejected transit-config {where} (400): min encryption version "
                              "should not be less than min decryption version")
        found.min_decryption, found.min_encryption = max(decryption, 1), encryption


def missing_key(mount: str, key: str) -> NotFound:
    return NotFound(f"fake backend has no Transit key {key!r} at mount {mount!r}")
