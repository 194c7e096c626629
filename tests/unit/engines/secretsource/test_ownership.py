"""SecretSync on the fakes: Rotor writes only Secrets it created for a source (by UID) or whose owner
opted in by naming the source; everything else is Conflict with no write, and the victim's Secret keeps
its bytes, labels and annotations."""

from __future__ import annotations

from typing import Any

import pytest

from rotor.api import keys

from .harness import NS, Cluster, run, vault_spec


def victim(cluster: Cluster, name: str = "db", *, type: str = "Opaque", labels: dict[str, str] | None = None,
           annotations: dict[str, str] | None = None, key: str = "password") -> dict[str, Any]:
    """A Secret someone else made, before any SecretSource names it."""
    return cluster.kube.put("secrets", {"metadata": {"name": name, "namespace": NS, "labels": labels or {"team": "b"},
                                                     "annotations": annotations or {"note": "theirs"}},
                                        "type": type, "data": {key: "dGhlaXJz"}})  # "theirs"


def unchanged(cluster: Cluster, before: dict[str, Any]) -> None:
    after = cluster.kube.get("secrets", NS, before["metadata"]["name"])
    assert after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == before["data"] and after["metadata"].get("labels") == before["metadata"].get("labels")
    assert after["metadata"].get("annotations") == before["metadata"].get("annotations")


def started(spec: dict[str, Any], *, name: str = "db") -> Cluster:
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", {"password": "pw-1"})
    cluster.add_source(name, spec=spec)
    cluster.start()
    return cluster


def conflict(cluster: Cluster, name: str = "db") -> str:
    ready = cluster.ready(name)
    assert (ready["status"], ready["reason"]) == ("False", keys.CONFLICT), ready
    return str(ready["message"])


@pytest.mark.parametrize("policy", ["Merge", "Owner", "Orphan"])
def test_a_secret_that_did_not_opt_in_is_never_written(policy: str) -> None:
    cluster = started(vault_spec(creationPolicy=policy))
    before = victim(cluster)
    cluster.sync_now()
    assert keys.ALLOW_SOURCE in conflict(cluster)
    unchanged(cluster, before)


def test_a_forged_source_label_grants_nothing() -> None:
    cluster = started(vault_spec())
    before = victim(cluster, labels={keys.SOURCE_LABEL: "db", keys.MANAGED_BY: keys.MANAGED_BY_VALUE})
    cluster.sync_now()
    conflict(cluster)
    unchanged(cluster, before)


def test_an_opted_in_secret_gets_only_the_merged_keys() -> None:
    cluster = started(vault_spec(creationPolicy="Merge"))
    victim(cluster, annotations={keys.ALLOW_SOURCE: "db"})
    cluster.sync_now()
    assert cluster.ready()["reason"] == keys.SYNCED
    secret = cluster.kube.secret(NS, "db")
    assert secret is not None and secret.data == {"password": b"pw-1"} and secret.owner_refs == ()
    assert keys.SOURCE_UID not in secret.annotations and secret.annotations[keys.ADDED_LABELS] == keys.MANAGED_BY


def test_an_opt_in_naming_another_source_is_refused() -> None:
    cluster = started(vault_spec(creationPolicy="Merge"))
    before = victim(cluster, annotations={keys.ALLOW_SOURCE: "other"})
    cluster.sync_now()
    conflict(cluster)
    unchanged(cluster, before)


@pytest.mark.parametrize("secret_type", ["kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token",
                                         "helm.sh/release.v1"])
def test_secret_types_rotor_never_writes_are_refused_even_opted_in(secret_type: str) -> None:
    cluster = started(vault_spec(creationPolicy="Merge"))
    before = victim(cluster, type=secret_type, annotations={keys.ALLOW_SOURCE: "db"})
    cluster.sync_now()
    assert secret_type in conflict(cluster) and "never writes" in conflict(cluster)
    unchanged(cluster, before)


def test_a_secret_another_tool_manages_is_not_merged_into() -> None:
    cluster = started(vault_spec(creationPolicy="Merge"))
    before = victim(cluster, labels={keys.MANAGED_BY: "Helm"}, annotations={keys.ALLOW_SOURCE: "db"})
    cluster.sync_now()
    assert "Helm" in conflict(cluster)
    unchanged(cluster, before)


def test_a_second_source_on_the_same_secret_is_conflict() -> None:
    cluster = started(vault_spec())
    cluster.sync_now()
    before = cluster.kube.get("secrets", NS, "db")
    assert before is not None
    cluster.add_source("second", spec=vault_spec(name="db"))
    cluster.sync_now((NS, "second"))
    assert "one Secret has one SecretSource" in conflict(cluster, "second")
    # Even when the Secret's owner names the second one: the first still holds it.
    cluster.add_source("third", spec=vault_spec(name="db", creationPolicy="Merge"))
    cluster.sync_now((NS, "third"))
    conflict(cluster, "third")
    unchanged(cluster, before)


def test_switching_merge_to_owner_never_takes_a_secret_over() -> None:
    cluster = started(vault_spec(creationPolicy="Merge"))
    victim(cluster, annotations={keys.ALLOW_SOURCE: "db"})
    cluster.sync_now()
    merged = cluster.kube.get("secrets", NS, "db")
    assert merged is not None
    cluster.edit_spec(creationPolicy="Owner", type="kubernetes.io/basic-auth")
    cluster.backend.put("secret", "app/db", {"username": "u", "password": "pw-2"})
    cluster.sync_now()
    assert "was not created by this SecretSource" in conflict(cluster)
    unchanged(cluster, merged)  # no owner reference, no type change (which would delete it), no data replaced
    assert [r for r in cluster.kube.requests if r[0] == "delete"] == []


def test_a_type_change_recreates_only_a_secret_rotor_created() -> None:
    cluster = started(vault_spec())
    cluster.sync_now()
    cluster.backend.put("secret", "app/db", {"username": "u", "password": "pw-2"})
    cluster.edit_spec(type="kubernetes.io/basic-auth")
    cluster.sync_now()
    secret = cluster.kube.secret(NS, "db")
    assert secret is not None and secret.type == "kubernetes.io/basic-auth"


def test_release_keeps_what_the_owner_set() -> None:
    cluster = started(vault_spec(creationPolicy="Merge", deletionPolicy="Delete"))
    before = victim(cluster, annotations={keys.ALLOW_SOURCE: "db", keys.ALLOWED_NAMESPACES: "x", "note": "theirs"},
                    key="other")
    cluster.sync_now()
    cluster.to_sync.clear()
    run(cluster.kube.delete_object("secretsources", NS, "db"))
    cluster.sync_now()
    after = cluster.kube.get("secrets", NS, "db")
    assert after is not None and after["data"] == before["data"]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
