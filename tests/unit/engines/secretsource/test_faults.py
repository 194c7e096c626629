"""SecretSync on the fakes under faults: a managed Secret deleted while the watch was away (a re-list
after 410 Gone brings no DELETED event), and a renamed target whose old Secret must not stay behind."""

from __future__ import annotations

import pytest

from rotor.api import keys

from .harness import NS, Cluster, run, vault_spec


def synced(**target: str) -> Cluster:
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", {"password": "pw-1"})
    cluster.add_source(spec=vault_spec(**target))
    cluster.start()
    cluster.sync_now()
    assert cluster.ready()["reason"] == keys.SYNCED
    return cluster


def test_an_update_that_finds_the_secret_gone_creates_it_and_the_view_forgets_it() -> None:
    cluster = synced()
    cluster.live = False  # the watch expired: the deletion below is never seen
    assert run(cluster.kube.delete_secret(NS, "db"))
    assert (NS, "db") in cluster.sync.secrets  # the view still has it
    cluster.backend.put("secret", "app/db", {"password": "pw-2"})  # a change: the sync plans an update
    cluster.kube.requests.clear()
    cluster.sync_now()
    assert [r for r in cluster.kube.requests if r[1] == "secrets"] == [("replace", "secrets", "db"),
                                                                       ("create", "secrets", "db")]
    assert cluster.data() == {"password": b"pw-2"}
    assert cluster.ready()["reason"] == keys.SYNCED
    secret = cluster.kube.secret(NS, "db")
    assert secret is not None and cluster.sync.secrets[(NS, "db")].resource_version == secret.resource_version


def test_a_secret_gone_while_nothing_changed_is_recreated_at_the_next_restore() -> None:
    cluster = synced()
    cluster.live = False
    run(cluster.kube.delete_secret(NS, "db"))
    cluster.sync_now()  # the view says up to date: no request (what the refresh costs)
    assert cluster.data() is None
    cluster.live = True  # the re-list: the Secret is missing; Kopf sends nothing, the view still has it
    cluster.sync.remember(NS, "db", None)  # what reconciling the view on re-list does
    cluster.sync_now()
    assert cluster.data() == {"password": b"pw-1"}


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_a_renamed_target_leaves_no_secret_behind(policy: str) -> None:
    cluster = synced(deletionPolicy=policy)
    cluster.edit_spec(name="db-v2", deletionPolicy=policy)
    cluster.sync_now()
    assert cluster.data("db-v2") == {"password": b"pw-1"}
    assert cluster.status()["targetSecret"] == "db-v2" and cluster.ready()["reason"] == keys.SYNCED
    old = cluster.kube.secret(NS, "db")
    if policy == "Delete":
        assert old is None
    else:
        assert old is not None and old.data == {"password": b"pw-1"} and old.owner_refs == ()
        assert keys.SOURCE_LABEL not in old.labels and keys.SOURCE_UID not in old.annotations


def test_a_rename_onto_a_foreign_secret_keeps_the_old_one_until_it_succeeds() -> None:
    cluster = synced()
    cluster.kube.put("secrets", {"metadata": {"name": "taken", "namespace": NS}, "data": {"x": "eA=="}})
    cluster.edit_spec(name="taken")
    cluster.sync_now()
    assert cluster.ready()["reason"] == keys.CONFLICT
    assert cluster.status()["targetSecret"] == "db"  # still the Secret Rotor last wrote
    assert cluster.data("db") == {"password": b"pw-1"} and cluster.data("taken") == {"x": b"x"}
    cluster.edit_spec(name="free")
    cluster.sync_now()
    assert cluster.data("free") == {"password": b"pw-1"} and cluster.data("db") is None


def test_a_rename_never_releases_a_secret_rotor_does_not_hold() -> None:
    cluster = synced()
    body = cluster.kube.get("secrets", NS, "db")
    assert body is not None
    meta = {k: v for k, v in body["metadata"].items() if k not in ("ownerReferences", "annotations", "labels")}
    cluster.kube.put("secrets", {**body, "metadata": meta})  # someone took it over meanwhile
    cluster.edit_spec(name="db-v2")
    cluster.sync_now()
    assert cluster.data("db") == {"password": b"pw-1"} and cluster.data("db-v2") == {"password": b"pw-1"}
