"""Transit key rotation (strategy transit) as plain data: what status records of a key's versions, when
a version one ahead is this rotation's own, and how far the minimums go up.

Readers sign, verify, encrypt and decrypt through Vault, so nothing is delivered to them: the new
version is in use the moment it exists. The overlap keeps the old versions decrypting and verifying;
Revoking raises the minimum versions to the new one; nothing here ever lowers a minimum.

An exportable key may be delivered (spec.transit.export): the versions still in use go into the
SecretSource's secret as a new KV version, one property per key version, which the Secret then holds
like any rotated value. What that KV version holds is a function of the key's versions alone
(delivered_versions), so a step repeated after a crash writes nothing new when it finds it there.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

from rotor.api.rotationpolicy import RotationPolicySpec, TransitExport
from rotor.planning import times

MAX_DELIVERED = 10  # key versions a Secret holds at most (the newest in use): a Secret stays small
LATEST = "latest"  # <prefix>latest: the number of the newest version delivered


def delivers(spec: RotationPolicySpec) -> bool:
    """Whether readers get the new value through the SecretSource's Secret (Propagating and Verifying
    wait for it); a Transit key is used in place unless its material is exported into the Secret."""
    return spec.strategy != "transit" or export_of(spec) is not None


def export_of(spec: RotationPolicySpec) -> TransitExport | None:
    return spec.transit.export if spec.strategy == "transit" and spec.transit is not None else None


def key_values(mount: str, key: str, latest: int, min_decryption: int, min_encryption: int,
               delivered: Sequence[int] = (), kv_version: str | None = None,
               created: datetime.datetime | None = None) -> dict[str, str]:
    """status.rotation.old/new and status.active for a Transit key: numbers, names and when the latest
    version was made (the backend's clock; inventory and metrics show its age). With an export: the key
    versions the Secret holds, and the KV version holding them."""
    values = {"key": f"{mount}/{key}", "keyVersion": str(latest), "minDecryptionVersion": str(min_decryption),
              "minEncryptionVersion": str(min_encryption)}
    if created is not None:
        values["keyVersionCreated"] = times.iso(created)
    if kv_version is not None:
        values["deliveredVersions"] = ",".join(str(v) for v in delivered)
        values["version"] = kv_version
    return values


def delivered_versions(latest: int, min_decryption: int, limit: int = MAX_DELIVERED) -> list[int]:
    """The key versions a Secret holds: every version that still decrypts and verifies (from the
    minimum up to the latest), the newest LIMIT of them."""
    if latest < 1:
        return []
    return list(range(max(min_decryption, 1, latest - limit + 1), latest + 1))


def versions_in(data: Mapping[str, str], prefix: str) -> list[int]:
    """The key versions a KV version's DATA holds (properties <prefix><number>), oldest first."""
    found = [name[len(prefix):] for name in data if name.startswith(prefix)]
    return sorted(int(n) for n in found if n.isdigit() and not n.startswith("0"))


def delivery_data(data: Mapping[str, str], prefix: str, materials: Mapping[int, str]) -> dict[str, str]:
    """DATA (the source's secret) holding exactly the key versions of MATERIALS: properties of other
    names are kept (the app's own settings); older delivered versions are dropped."""
    kept = {name: value for name, value in data.items()
            if not (name.startswith(prefix) and (name[len(prefix):].isdigit() or name[len(prefix):] == LATEST))}
    delivered = {f"{prefix}{version}": material for version, material in sorted(materials.items())}
    latest = {f"{prefix}{LATEST}": str(max(materials))} if materials else {}
    return {**kept, **delivered, **latest}


def holds(data: Mapping[str, str], prefix: str, versions: Sequence[int]) -> bool:
    """Whether DATA already delivers exactly VERSIONS (a write done before a crash)."""
    latest = data.get(f"{prefix}{LATEST}")
    return versions_in(data, prefix) == list(versions) and (not versions or latest == str(versions[-1]))


def made_since(created: datetime.datetime | None, moment: datetime.datetime) -> bool:
    """Whether a key version made at CREATED (the backend's clock) is newer than MOMENT: a leak
    response that finds one adopts it instead of rotating again (it was its own, before a crash)."""
    return created is not None and created > moment


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
