"""Which Secrets a SecretSource may write: ownership by UID and explicit opt-in, never by label.

Rotor holds Secret rights in every namespace on behalf of every tenant, so it writes a Secret only
if it created that Secret for that SecretSource (the source's UID in an owner reference or in the
rotor.dev/source-uid annotation) or if the Secret's owner opted in by naming the source in the
rotor.dev/allow-source annotation (creationPolicy Merge). Labels are not proof: anyone who may
label a Secret can forge one. Some Secret types Rotor never writes, whoever asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from rotor.api import keys

if TYPE_CHECKING:  # planning.sync plans with these rules; the types are its own
    from rotor.planning.sync import ObservedSecret, Owner

# Written by the API server, kubeadm or Helm; a write from Rotor would break what relies on them.
FORBIDDEN_TYPES = ("kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token", "helm.sh/release.v1")

Hold = Literal["created", "merged"]


def created_for(secret: ObservedSecret, owner: Owner) -> bool:
    """Whether Rotor created SECRET for OWNER (by UID: an owner reference or Rotor's annotation)."""
    return owner.uid in secret.owner_uids or secret.annotations.get(keys.SOURCE_UID) == owner.uid


def other_holder(secret: ObservedSecret, owner: Owner) -> str | None:
    """Another SecretSource this Secret is held by, as a phrase for a message (None: none)."""
    uid = secret.annotations.get(keys.SOURCE_UID)
    if uid and uid != owner.uid:
        return f"another SecretSource (uid {uid})"
    for ref in secret.owner_refs:
        if ref.get("kind") == owner.kind and str(ref.get("apiVersion", "")).startswith("rotor.dev/") \
                and ref.get("uid") != owner.uid:
            return f"SecretSource {ref.get('name')}"
    label = secret.labels.get(keys.SOURCE_LABEL)
    if label and label != owner.name:
        return f"SecretSource {label}"
    return None


def refusal(secret: ObservedSecret, owner: Owner, policy: str) -> str | None:
    """Why OWNER may not write the existing SECRET under creation POLICY; None: it may."""
    name = secret.name
    if secret.type in FORBIDDEN_TYPES:
        return f"Secret {name} is of type {secret.type}, which Rotor never writes; rename spec.target.name"
    if created_for(secret, owner):
        return None
    other = other_holder(secret, owner)
    if other is not None:
        return (f"Secret {name} is managed by {other}: one Secret has one SecretSource; rename spec.target.name "
                "or delete the other SecretSource")
    if policy != "Merge":
        return (f"Secret {name} exists and was not created by this SecretSource; delete it, rename "
                f"spec.target.name, or use creationPolicy Merge and have the Secret's owner annotate it "
                f"{keys.ALLOW_SOURCE}={owner.name}")
    if secret.annotations.get(keys.ALLOW_SOURCE) != owner.name:
        return (f"Secret {name} does not allow this SecretSource to write into it; its owner may annotate it "
                f"{keys.ALLOW_SOURCE}={owner.name}")
    manager = secret.labels.get(keys.MANAGED_BY)
    if manager is not None and manager != keys.MANAGED_BY_VALUE:
        return (f"Secret {name} is managed by {manager} (label {keys.MANAGED_BY}); Rotor does not merge into a "
                "Secret another tool manages")
    return None


def hold(secret: ObservedSecret, owner: Owner) -> Hold | None:
    """How OWNER holds SECRET, whatever its creationPolicy is now: created it, merged into it (opted in,
    and Rotor's label names it), or not at all. What releasing it may undo follows from this."""
    if created_for(secret, owner):
        return "created"
    if (secret.annotations.get(keys.ALLOW_SOURCE) == owner.name and secret.labels.get(keys.SOURCE_LABEL) == owner.name
            and other_holder(secret, owner) is None):
        return "merged"
    return None
