"""Transit key rotation (strategy transit) as plain data: what status records of a key's versions, when
a version one ahead is this rotation's own, and how far the minimums go up.

Readers sign, verify, encrypt and decrypt through Vault, so nothing is delivered to them: the new
version is in use the moment it exists. The overlap keeps the old versions decrypting and verifying;
Revoking raises the minimum versions to the new one; nothing here ever lowers a minimum.
"""

from __future__ import annotations

from collections.abc import Mapping

from rotor.api.rotationpolicy import RotationPolicySpec


def delivers(spec: RotationPolicySpec) -> bool:
    """Whether readers get the new value through the SecretSource's Secret (Propagating and Verifying
    wait for it); a Transit key is used in place."""
    return spec.strategy != "transit"


def key_values(mount: str, key: str, latest: int, min_decryption: int, min_encryption: int) -> dict[str, str]:
    """status.rotation.old/new and status.active for a Transit key: numbers and names only."""
    return {"key": f"{mount}/{key}", "keyVersion": str(latest), "minDecryptionVersion": str(min_decryption),
            "minEncryptionVersion": str(min_encryption)}


def version_of(values: Mapping[str, str], field: str = "keyVersion") -> int:
    """A version number recorded in status (0 when missing or not a number)."""
    text = values.get(field) or ""
    return int(text) if text.isdigit() else 0


def published(old: Mapping[str, str], latest: int) -> bool:
    """Whether the key already has a version after the one readers used when this rotation started (OLD,
    recorded in status before Publishing acts): this rotation's own, whose answer a crash lost, or one
    made since by someone else. Either is new key material: adopt it rather than rotate again."""
    return latest > version_of(old)


def raised(current_decryption: int, current_encryption: int, new: int) -> tuple[int, int] | None:
    """The minimums (decryption, encryption) that retire every version before NEW; None when they
    already do (a Revoking step done before a crash, or an administrator ahead of Rotor). A minimum
    above NEW stays where it is; the encryption one is never below the decryption one (Vault refuses)."""
    decryption = max(current_decryption, new)
    encryption = max(current_encryption, decryption)
    if (decryption, encryption) == (current_decryption, current_encryption):
        return None
    return decryption, encryption
