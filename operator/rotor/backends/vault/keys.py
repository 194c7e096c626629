"""Vault Transit keys, as rotor.backends.protocols.KeyRing: part of the handle (VaultSecret) a
RotationPolicy with strategy transit acts through.

Only numbers pass: the latest version and the minimums. Nothing here reads key material (Transit's
export endpoint is never called), so there is nothing to leak into status or logs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rotor.backends.protocols import InvalidSpec, KeyVersions, NotFound


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


def versions_of(data: Mapping[str, Any]) -> KeyVersions:
    """The versions in use from a Transit key read (its `keys` map, which holds public keys of
    asymmetric keys, is not looked at)."""
    return KeyVersions(latest=int(data.get("latest_version") or 0),
                       min_decryption=int(data.get("min_decryption_version") or 0),
                       min_encryption=int(data.get("min_encryption_version") or 0))


def no_key(mount: str, key: str) -> NotFound:
    return NotFound(f"Vault has no Transit key {key!r} at mount {mount!r}; check spec.transit.mount and "
                    "spec.transit.key (an administrator creates the key)")
