"""planning.sync_claims: which existing Secrets a SecretSource may write, by UID and opt-in only."""

from __future__ import annotations

from rotor.api import keys
from rotor.planning.sync import ObservedSecret, Owner
from rotor.planning.sync_claims import hold, refusal

OWNER = Owner("team-a", "db", "uid-1")
REF = {"apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource", "name": "db", "uid": "uid-1"}


def secret(**kw: object) -> ObservedSecret:
    return ObservedSecret(**{"name": "db", "type": "Opaque", "data": {}, **kw})  # type: ignore[arg-type]


def test_created_by_uid_is_writable_under_any_policy() -> None:
    for created in (secret(owner_refs=(REF,)), secret(annotations={keys.SOURCE_UID: "uid-1"})):
        assert all(refusal(created, OWNER, p) is None for p in ("Owner", "Orphan", "Merge"))
        assert hold(created, OWNER) == "created"


def test_labels_prove_nothing() -> None:
    forged = secret(labels={keys.SOURCE_LABEL: "db", keys.MANAGED_BY: "rotor"})
    assert refusal(forged, OWNER, "Owner") is not None and refusal(forged, OWNER, "Merge") is not None
    assert hold(forged, OWNER) is None


def test_an_old_incarnation_of_the_source_is_another_holder() -> None:
    stale = secret(annotations={keys.SOURCE_UID: "uid-0"})
    message = refusal(stale, OWNER, "Owner")
    assert message is not None and "uid-0" in message


def test_merge_needs_the_owners_opt_in_naming_the_source() -> None:
    assert refusal(secret(), OWNER, "Merge") is not None
    assert refusal(secret(annotations={keys.ALLOW_SOURCE: "other"}), OWNER, "Merge") is not None
    opted = secret(annotations={keys.ALLOW_SOURCE: "db"})
    assert refusal(opted, OWNER, "Merge") is None
    assert refusal(opted, OWNER, "Owner") is not None  # an opt-in to merge is no leave to take over
    assert hold(opted, OWNER) is None  # nothing written yet
    assert hold(secret(annotations={keys.ALLOW_SOURCE: "db"}, labels={keys.SOURCE_LABEL: "db"}), OWNER) == "merged"


def test_never_written_types_and_other_managers() -> None:
    for t in ("kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token", "helm.sh/release.v1"):
        message = refusal(secret(type=t, owner_refs=(REF,)), OWNER, "Owner")
        assert message is not None and t in message
    helm = secret(labels={keys.MANAGED_BY: "Helm"}, annotations={keys.ALLOW_SOURCE: "db"})
    assert "Helm" in (refusal(helm, OWNER, "Merge") or "")
