"""Does a spec ask a backend for something it cannot do? Plain data in, a message naming the field out."""

from __future__ import annotations

from rotor.api.capabilities import Capability
from rotor.api.rotationpolicy import RotationPolicySpec


def rotation_needs(spec: RotationPolicySpec) -> dict[Capability, str]:
    """The capabilities a RotationPolicy needs of its source's backend, each with the field that needs it."""
    if spec.strategy == "transit":  # the key rotates in place: no new version of the source's secret
        if spec.transit is not None and spec.transit.export is not None:  # unless its material is delivered
            return {Capability.KEY_VERSIONS: "spec.transit", Capability.WRITE_VERSION: "spec.transit.export",
                    Capability.VERSIONS: "spec.transit.export"}
        return {Capability.KEY_VERSIONS: "spec.transit"}
    if spec.strategy == "certificate":  # the SecretSource issues it; the policy revokes the old serial
        return {Capability.CERTIFICATES: "spec.strategy"}
    needs = {Capability.WRITE_VERSION: "spec.strategy", Capability.VERSIONS: "spec.strategy"}
    if spec.strategy == "dynamic":
        needs[Capability.LEASES] = "spec.dynamic"
    if spec.strategy == "overlap" and spec.overlap.static_roles:
        needs[Capability.STATIC_CREDENTIALS] = "spec.overlap.staticRoles"
    return needs


# A LeakIncident reads the exposed version to fingerprint it and destroys it after the rotation.
INCIDENT_NEEDS: dict[Capability, str] = {Capability.VERSIONS: "spec.secretSourceRef"}


def missing(needs: dict[Capability, str], provider: str, has: frozenset[Capability], kind: str) -> str | None:
    """A message naming the first field whose capability the backend lacks, or None."""
    for capability, where in needs.items():
        if capability not in has:
            return (f"{where}: the SecretSource's backend (provider {provider}) cannot {_VERB[capability]}, which "
                    f"this {kind} needs; rotate a secret of a backend that can (e.g. provider vault)")
    return None


_VERB = {
    Capability.READ: "read secrets",
    Capability.WRITE_VERSION: "write a new version",
    Capability.VERSIONS: "list, read or destroy versions",
    Capability.LEASES: "issue or revoke leases",
    Capability.STATIC_CREDENTIALS: "rotate a static credential",
    Capability.AUDIT_TRAIL: "show an audit trail",
    Capability.KEY_VERSIONS: "rotate a Transit key or set its minimum versions",
    Capability.CERTIFICATES: "issue or revoke certificates",
}
