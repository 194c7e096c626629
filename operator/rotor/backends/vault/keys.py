"""Vault Transit keys, as rotor.backends.protocols.KeyRing: part of the handle (VaultSecret) a
RotationPolicy with strategy transit acts through.

Numbers pass: the latest version, its creation time and the minimums. Key material passes only
through export_key (Transit's export endpoint), for a policy that delivers an exportable key: the
value goes back to the caller and into the masker (observability.secrecy), never into a message.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from rotor.backends.protocols import InvalidSpec, KeyVersions, NotFound
from rotor.observability.secrecy import remember
from rotor.planning import times


class TransitKeys:
    """KeyRing over Vault's Transit engine (mixed into VaultSecret, which provides _as)."""

    async def _as(self, operation: str, fn: Callable[[Any], Any], where: str | None = None) -> Any:
        raise NotImplementedError  # VaultSecret._as: one request as the handle's identity

    async def key_versions(self, mount: str, key: str) -> KeyVersions:
        """GET /v1/{mount}/keys/{key}: latest_version, min_decryption_version, min_encryption_version."""
        where = f"{mount}/keys/{key}"
        try:
            response = await self._as("transit-read", lambda c: c.adapter.get(f"/v1/{where}"), where=where)
        except NotFound:
            raise no_key(mount, key) from None
        if not isinstance(response, Mapping) or not response.get("data"):  # some Vaults: 204 for no key
            raise no_key(mount, key)
        return versions_of(response["data"])

    async def rotate_key(self, mount: str, key: str) -> int:
        """POST /v1/{mount}/keys/{key}/rotate: a new version (Vault answers with the key, or nothing)."""
        where = f"{mount}/keys/{key}/rotate"
        try:
            response = await self._as("transit-rotate", lambda c: c.adapter.post(f"/v1/{where}"), where=where)
        except (NotFound, InvalidSpec) as err:
            if isinstance(err, InvalidSpec) and "not found" not in err.message:
                raise
            raise no_key(mount, key) from None
        data = (response or {}).get("data") if isinstance(response, Mapping) else None
        if data and data.get("latest_version"):
            return int(data["latest_version"])
        return (await self.key_versions(mount, key)).latest

    async def set_min_versions(self, mount: str, key: str, *, decryption: int, encryption: int) -> None:
        """POST /v1/{mount}/keys/{key}/config with min_decryption_version and min_encryption_version."""
        where = f"{mount}/keys/{key}/config"
        await self._as("transit-config", lambda c: c.adapter.post(
            f"/v1/{where}", json={"min_decryption_version": decryption, "min_encryption_version": encryption}),
            where=where)

    async def export_key(self, mount: str, key: str, kind: str, version: int) -> str:
        """GET /v1/{mount}/export/{kind}/{key}/{version}: that version's key material (data.keys)."""
        where = f"{mount}/export/{kind}/{key}/{version}"
        try:
            response = await self._as("transit-export", lambda c: c.adapter.get(f"/v1/{where}"), where=where)
        except NotFound:
            raise no_key(mount, key) from None
        except InvalidSpec as err:  # Vault's words name the cause (not exportable, version retired)
            raise InvalidSpec(f"Vault refused to export version {version} of Transit key {key!r}: "
                              f"{err.message}") from None
        exported = ((response or {}).get("data") or {}).get("keys") if isinstance(response, Mapping) else None
        material = exported.get(str(version)) if isinstance(exported, Mapping) else None
        if not isinstance(material, str) or not material:
            raise InvalidSpec(f"Vault exported no {kind} for version {version} of Transit key {key!r}")
        remember({f"transit:{key}:{version}": material.encode()})  # masked should a log line ever quote it
        return material


def versions_of(data: Mapping[str, Any]) -> KeyVersions:
    """The versions in use from a Transit key read. Of its `keys` map (which holds the public keys of
    asymmetric keys) only the latest version's creation time is looked at."""
    latest = int(data.get("latest_version") or 0)
    entry = (data.get("keys") or {}).get(str(latest))
    return KeyVersions(latest=latest, min_decryption=int(data.get("min_decryption_version") or 0),
                       min_encryption=int(data.get("min_encryption_version") or 0), latest_created=created(entry))


def created(entry: Any) -> datetime.datetime | None:
    """When a key version was made: symmetric keys map versions to Unix seconds, asymmetric ones to an
    object with creation_time (RFC 3339)."""
    if isinstance(entry, bool):
        return None
    if isinstance(entry, int | float):
        return datetime.datetime.fromtimestamp(entry, tz=datetime.UTC)
    if isinstance(entry, Mapping):
        return times.parse_optional(str(entry.get("creation_time") or ""))
    return None


def no_key(mount: str, key: str) -> NotFound:
    return NotFound(f"Vault has no Transit key {key!r} at mount {mount!r}; check spec.transit.mount and "
                    "spec.transit.key (an administrator creates the key)")
