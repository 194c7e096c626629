"""Transit keys of the in-memory FakeBackend (KeyRing), answering as Vault's Transit engine does:
versions are numbers, minimums are checked the way Vault's key config endpoint checks them, and an
exportable key exports each version's own (random) material."""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from rotor.backends.protocols import InvalidSpec, KeyVersions, NotFound


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class FakeKey:
    latest: int = 1
    min_decryption: int = 1
    min_encryption: int = 0
    rotations: int = 0  # how often rotate_key made a version (crash tests count them)
    exportable: bool = False
    clock: Callable[[], datetime.datetime] = _utc_now  # the backend's clock (a test may set a fake one)
    materials: dict[int, str] = field(default_factory=dict)  # version -> key material, made when first asked
    created: dict[int, datetime.datetime] = field(default_factory=dict)
    exports: int = 0  # export_key calls answered

    def material(self, version: int) -> str:
        return self.materials.setdefault(version, secrets.token_urlsafe(32))


class FakeTransitKeys:
    """Mixed into FakeSecret: its _key finds a key of the backend, recording the call."""

    def _key(self, operation: str, mount: str, key: str) -> FakeKey:
        raise NotImplementedError

    async def key_versions(self, mount: str, key: str) -> KeyVersions:
        found = self._key("transit-read", mount, key)
        created = found.created.setdefault(found.latest, found.clock())
        return KeyVersions(found.latest, found.min_decryption, found.min_encryption, latest_created=created)

    async def rotate_key(self, mount: str, key: str) -> int:
        found = self._key("transit-rotate", mount, key)
        found.latest += 1
        found.rotations += 1
        found.created[found.latest] = found.clock()
        return found.latest

    async def export_key(self, mount: str, key: str, kind: str, version: int) -> str:
        found = self._key("transit-export", mount, key)
        where = f"{mount}/export/{kind}/{key}/{version}"
        if kind != "public-key" and not found.exportable:  # Vault's own words (400)
            raise InvalidSpec(f"fake backend rejected transit-export {where} (400): private key material is not "
                              "exportable")
        if not found.min_decryption <= version <= found.latest:
            raise InvalidSpec(f"fake backend rejected transit-export {where} (400): version does not exist or is "
                              "below the minimum decryption version")
        found.exports += 1
        return found.material(version)

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
