"""SecretSync on the fakes: a deleted SecretSource's Secret goes or stays by deletionPolicy."""

from __future__ import annotations

from typing import Any

import pytest

from rotor.api import keys

from .harness import NS, Cluster, run, vault_spec


def synced(**target: Any) -> Cluster:
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", {"password": "pw-1"})
    if target.get("creationPolicy") == "Merge":
        cluster.kube.put("secrets", {"metadata": {"name": "db", "namespace": NS, "labels": {"team": "a"},
                                                  "annotations": {"note": "kept", keys.ALLOW_SOURCE: "db"}},
                                     "data": {"other": "b3RoZXI="}})
    cluster.add_source(spec=vault_spec(**target))
    cluster.start()
    cluster.sync_now()
    assert cluster.ready()["reason"] == keys.SYNCED
    return cluster


def delete(cluster: Cluster) -> None:
    """kubectl delete: the finalizer holds the object; the watch asks for one more sync, the cleanup."""
    cluster.to_sync.clear()
    assert run(cluster.kube.delete_object("secretsources", NS, "db"))
    assert cluster.to_sync == [(NS, "db")]
    assert cluster.sync_now() is None
    assert cluster.kube.get("secretsources", NS, "db") is None  # finalizer released: gone
    assert (NS, "db") not in cluster.sync.sources  # its DELETED event forgot it


def test_delete_removes_the_secret() -> None:
    cluster = synced(deletionPolicy="Delete")
    delete(cluster)
    assert cluster.kube.secret(NS, "db") is None


def test_retain_keeps_the_data_and_drops_every_trace_of_rotor() -> None:
    cluster = synced(deletionPolicy="Retain")
    delete(cluster)
    secret = cluster.kube.secret(NS, "db")
    assert secret is not None and secret.data == {"password": b"pw-1"}
    assert secret.owner_refs == () and keys.SOURCE_LABEL not in secret.labels
    assert not [k for k in secret.annotations if k.startswith("rotor.dev/")]


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_a_merge_target_is_never_deleted(policy: str) -> None:
    cluster = synced(creationPolicy="Merge", deletionPolicy=policy)
    delete(cluster)
    secret = cluster.kube.secret(NS, "db")
    assert secret is not None and secret.labels == {"team": "a"}
    assert secret.annotations == {"note": "kept", keys.ALLOW_SOURCE: "db"}  # its owner's opt-in stays
    expected = {"other": b"other"} if policy == "Delete" else {"other": b"other", "password": b"pw-1"}
    assert secret.data == expected


def test_a_failed_cleanup_is_retried_and_keeps_the_finalizer() -> None:
    cluster = synced(deletionPolicy="Delete")
    cluster.kube.fail("delete", "secrets", 500)
    run(cluster.kube.delete_object("secretsources", NS, "db"))
    delay = cluster.sync_now()
    assert delay is not None and delay > 0
    held = cluster.kube.get("secretsources", NS, "db")
    assert held is not None and held["metadata"]["finalizers"] == [keys.CLEANUP_FINALIZER]
    assert cluster.sync_now() is None and cluster.kube.secret(NS, "db") is None


def test_a_secret_someone_else_took_over_is_not_touched() -> None:
    cluster = synced(deletionPolicy="Delete")
    body = cluster.kube.get("secrets", NS, "db")
    assert body is not None
    # Taken over: Rotor's owner reference and annotations gone (labels alone prove nothing either way).
    meta = {k: v for k, v in body["metadata"].items() if k not in ("ownerReferences", "annotations")}
    cluster.kube.put("secrets", {**body, "metadata": {**meta, "labels": {"owner": "them"}}})
    delete(cluster)
    assert cluster.kube.secret(NS, "db") is not None
