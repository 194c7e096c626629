"""SecretSync on the fakes: one sync creates, updates, restores or refuses, with one write or none."""

from __future__ import annotations

from rotor.api import keys
from rotor.planning.hashing import value_hmac

from .harness import HMAC_KEY, NS, Cluster, run, vault_spec


def started(spec: dict[str, object] | None = None, **values: str) -> Cluster:
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", values or {"user": "app", "password": "pw-1"})
    cluster.add_source(spec=spec)
    cluster.start()
    return cluster


def test_a_first_sync_creates_the_secret_without_reading_it_first() -> None:
    cluster = started()
    delay = cluster.sync_now()
    assert delay is not None and 3000 < delay < 4000  # 1h, +/- 10 %
    assert cluster.data() == {"user": b"app", "password": b"pw-1"}
    secret = cluster.kube.secret(NS, "db")
    assert secret is not None and secret.labels[keys.SOURCE_LABEL] == "db"
    assert secret.owner_refs[0]["kind"] == "SecretSource" and secret.annotations[keys.MANAGED_KEYS] == "password,user"
    assert cluster.kube.requests == [("patch", "secretsources", "db"), ("create", "secrets", "db"),
                                     ("patch", "secretsources/status", "db"), ("create", "events", "db")]
    ready, status = cluster.ready(), cluster.status()
    assert (ready["status"], ready["reason"]) == ("True", keys.SYNCED)
    assert status["syncedVersion"] == "1" and status["dataHmac"] == secret.annotations[keys.DATA_HMAC]
    assert status["targetSecret"] == "db" and status["observedGeneration"] == 1 and "pw-1" not in str(status)
    assert cluster.events() == [("Normal", keys.SYNCED)]
    obj = cluster.kube.get("secretsources", NS, "db")
    assert obj is not None and obj["metadata"]["finalizers"] == [keys.CLEANUP_FINALIZER]


def test_a_refresh_where_nothing_changed_makes_no_kubernetes_request() -> None:
    cluster = started()
    cluster.sync_now()
    cluster.kube.requests.clear()
    reads = len(cluster.backend.calls)
    assert cluster.sync_now() is not None
    assert cluster.kube.requests == []
    assert len(cluster.backend.calls) == reads + 1  # one backend read, nothing else


def test_a_new_backend_value_updates_the_secret_in_place() -> None:
    cluster = started()
    cluster.sync_now()
    first = cluster.status()
    cluster.backend.put("secret", "app/db", {"user": "app", "password": "pw-2"})
    cluster.kube.requests.clear()
    cluster.sync_now()
    assert cluster.data() == {"user": b"app", "password": b"pw-2"}
    assert cluster.secret_writes() == [("replace", "secrets", "db")]
    status = cluster.status()
    assert status["syncedVersion"] == "2" and status["dataHmac"] != first["dataHmac"]
    assert cluster.events() == [("Normal", keys.SYNCED)] * 2


def test_merge_writes_only_its_keys_into_a_secret_it_does_not_own() -> None:
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", {"password": "pw-1"})
    cluster.kube.put("secrets", {"metadata": {"name": "db", "namespace": NS, "labels": {"team": "a"},
                                              "annotations": {keys.ALLOW_SOURCE: "db"}},
                                 "type": "Opaque", "data": {"other": "b3RoZXI="}})
    cluster.add_source(spec=vault_spec(creationPolicy="Merge"))
    cluster.start()
    cluster.sync_now()
    assert cluster.data() == {"other": b"other", "password": b"pw-1"}
    secret = cluster.kube.secret(NS, "db")
    assert secret is not None and secret.labels["team"] == "a" and secret.owner_refs == ()
    assert cluster.kube.writes()[1] == ("replace", "secrets", "db")
    assert cluster.ready()["reason"] == keys.SYNCED


def test_a_write_on_a_stale_view_conflicts_then_reads_and_plans_again() -> None:
    cluster = started()
    cluster.sync_now()
    cluster.live = False  # the watch lags: the view keeps the Secret as Rotor wrote it
    body = cluster.kube.get("secrets", NS, "db")
    assert body is not None
    cluster.kube.put("secrets", {**body, "metadata": {**body["metadata"], "labels": {**body["metadata"]["labels"],
                                                                                     "team": "a"}}})
    cluster.backend.put("secret", "app/db", {"user": "app", "password": "pw-2"})
    cluster.kube.requests.clear()
    cluster.sync_now()
    assert [r for r in cluster.kube.requests if r[1] == "secrets"] == [
        ("replace", "secrets", "db"), ("get", "secrets", "db"), ("replace", "secrets", "db")]
    secret = cluster.kube.secret(NS, "db")
    assert secret is not None and secret.data["password"] == b"pw-2" and secret.labels["team"] == "a"
    assert cluster.ready()["reason"] == keys.SYNCED


def test_a_foreign_secret_of_the_target_name_is_left_alone() -> None:
    cluster = started()
    cluster.live = False  # created after the start-up listing, never seen: not Rotor's anyway
    cluster.kube.put("secrets", {"metadata": {"name": "db", "namespace": NS}, "data": {"mine": "eA=="}})
    cluster.live = True
    cluster.sync_now()
    assert cluster.data() == {"mine": b"x"}
    assert cluster.secret_writes() == [("create", "secrets", "db")]  # refused with 409; then read, never written
    ready = cluster.ready()
    assert (ready["status"], ready["reason"]) == ("False", keys.CONFLICT)
    assert cluster.events() == [("Warning", keys.CONFLICT)]


def test_an_edited_managed_secret_is_restored() -> None:
    cluster = started()
    cluster.sync_now()
    cluster.to_sync.clear()
    body = cluster.kube.get("secrets", NS, "db")
    assert body is not None
    cluster.kube.put("secrets", {**body, "data": {**body["data"], "password": "ZXZpbA=="}})  # "evil"
    assert cluster.to_sync == [(NS, "db")]  # the watch event tells the drift
    cluster.sync_now()
    assert cluster.data() == {"user": b"app", "password": b"pw-1"}
    cluster.to_sync.clear()
    body = cluster.kube.get("secrets", NS, "db")
    assert body is not None
    cluster.kube.put("secrets", {**body, "data": {**body["data"], "added": "eA=="}})
    assert cluster.to_sync == []  # a key Rotor does not manage is no drift


def test_a_deleted_managed_secret_is_recreated() -> None:
    cluster = started()
    cluster.sync_now()
    cluster.to_sync.clear()
    assert run(cluster.kube.delete_secret(NS, "db")) and cluster.to_sync == [(NS, "db")]
    cluster.sync_now()
    assert cluster.data() == {"user": b"app", "password": b"pw-1"}


def test_a_backend_failure_keeps_the_secret_and_says_why_once() -> None:
    cluster = started()
    cluster.sync_now()
    cluster.backend.down = True
    cluster.kube.requests.clear()
    first = cluster.sync_now()
    assert cluster.data() == {"user": b"app", "password": b"pw-1"}
    assert cluster.secret_writes() == []
    ready = cluster.ready()
    assert (ready["status"], ready["reason"]) == ("False", keys.BACKEND_UNAVAILABLE)
    assert cluster.events()[-1] == ("Warning", keys.BACKEND_UNAVAILABLE)
    assert first is not None and first < 5  # backoff, not the hour
    cluster.kube.requests.clear()
    second = cluster.sync_now()
    assert cluster.kube.requests == []  # the same failure again: no status write, no second Event
    assert second is not None and second >= 1
    cluster.backend.down = False
    cluster.sync_now()
    assert cluster.ready()["reason"] == keys.SYNCED


def test_a_value_reported_leaked_is_never_delivered() -> None:
    cluster = started()
    cluster.sync_now()
    cluster.sync.set_denylist(("incident", NS, "leak"), frozenset({value_hmac(HMAC_KEY, b"pw-leaked")}))
    cluster.backend.put("secret", "app/db", {"user": "app", "password": "pw-leaked"})
    cluster.kube.requests.clear()
    cluster.sync_now()
    assert cluster.data() == {"user": b"app", "password": b"pw-1"}
    ready = cluster.ready()
    assert (ready["status"], ready["reason"]) == ("False", keys.DENYLISTED) and "pw-leaked" not in str(ready)
    assert cluster.secret_writes() == []


def test_kubernetes_refusing_the_write_is_permission_denied() -> None:
    cluster = started()
    cluster.kube.fail("create", "secrets", 403, "secrets is forbidden")
    cluster.sync_now()
    ready = cluster.ready()
    assert (ready["status"], ready["reason"]) == ("False", keys.PERMISSION_DENIED)
    assert "secrets is forbidden" in ready["message"]


def test_an_invalid_spec_is_reported_and_not_retried() -> None:
    cluster = Cluster()
    cluster.add_source(spec={"provider": "vault", "serviceAccountName": "app", "target": {"type": 7}})
    cluster.start()
    assert cluster.sync_now() is None
    ready = cluster.ready()
    assert (ready["status"], ready["reason"]) == ("False", keys.INVALID_SPEC)
    assert ready["message"].startswith("spec.")
