"""Vault PKI certificates, as rotor.backends.protocols.CertificateIssuer: part of the handle (VaultSecret)
a SecretSource with spec.vault.pki issues through.

The private key passes through memory into the Certificate and from there into the Secret; Vault's
refusals (400: unknown role, a name or TTL the role does not allow) name names and TTLs, never keys.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rotor.backends.protocols import Certificate, InvalidSpec, NotFound


class VaultPki:
    """CertificateIssuer over Vault's PKI engine (mixed into VaultSecret, which provides _as)."""

    async def _as(self, operation: str, fn: Callable[[Any], Any], where: str | None = None) -> Any:
        raise NotImplementedError  # VaultSecret._as: one request as the handle's identity

    async def issue_certificate(self, mount: str, role: str, common_name: str, alt_names: Sequence[str],
                                ip_sans: Sequence[str], ttl: int, key_type: str | None = None,
                                key_bits: int | None = None) -> Certificate:
        """POST /v1/{mount}/issue/{role}: a new key and certificate (Vault keeps no copy of the key)."""
        where = f"{mount}/issue/{role}"
        body: dict[str, Any] = {"common_name": common_name, "ttl": f"{ttl}s", "format": "pem"}
        if alt_names:
            body["alt_names"] = ",".join(alt_names)
        if ip_sans:
            body["ip_sans"] = ",".join(ip_sans)
        if key_type:
            body["key_type"] = key_type
        if key_bits:
            body["key_bits"] = key_bits
        try:
            response = await self._as("pki-issue", lambda c: c.adapter.post(f"/v1/{where}", json=body),
                                      where=where)
        except NotFound:
            raise InvalidSpec(f"Vault has no PKI engine at mount {mount!r} (404)") from None
        return certificate_of(response["data"])

    async def revoke_certificate(self, mount: str, serial: str) -> None:
        """POST /v1/{mount}/revoke with the serial (Vault answers 200 for one already revoked or expired)."""
        where = f"{mount}/revoke"
        await self._as("pki-revoke", lambda c: c.adapter.post(f"/v1/{where}", json={"serial_number": serial}),
                       where=where)


def certificate_of(data: Mapping[str, Any]) -> Certificate:
    """A Certificate from the data of Vault's issue answer."""
    chain = tuple(str(pem) for pem in (data.get("ca_chain") or []))
    issuing = str(data.get("issuing_ca") or "")
    return Certificate(certificate=str(data["certificate"]), private_key=str(data["private_key"]),
                       ca_chain=chain or ((issuing,) if issuing else ()), issuing_ca=issuing,
                       serial=str(data["serial_number"]),
                       not_after=datetime.datetime.fromtimestamp(int(data["expiration"]), datetime.UTC))
