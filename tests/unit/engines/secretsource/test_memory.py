"""The sync view keeps no values: managed Secrets as keyed digests per key (or metadata only, as listed
at start-up); a sync reads a Secret by name only when its data is needed, and still writes nothing when
nothing changed."""

from __future__ import annotations

from rotor.api import keys
from rotor.engines.secretsource.worker import SecretSync

from .harness import NS, Cluster, run, vault_spec


def no_values(sync: SecretSync) -> bool:
    return all(not secret.data for secret in sync.secrets.values())


def test_the_view_keeps_digests_not_values() -> None:
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", {"password": "pw-1"})
    cluster.add_source()
    cluster.start()
    cluster.sync_now()
    kept = cluster.sync.secrets[(NS, "db")]
    assert kept.data == {} and kept.digests is not None and set(kept.digests) == {"password"}
    assert "pw-1" not in repr(cluster.sync.secrets) and no_values(cluster.sync)
    cluster.kube.requests.clear()
    cluster.sync_now()
    assert cluster.kube.requests == []  # the digests decide "nothing changed"


def test_a_restart_lists_metadata_only_and_reads_a_secret_once_before_deciding() -> None:
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", {"password": "pw-1"})
    cluster.add_source()
    cluster.start()
    cluster.sync_now()
    cluster.live = False
    restarted = Cluster(kube=cluster.kube, backend=cluster.backend)  # a new operator; its watch not caught up
    restarted.live = False
    run(restarted.sync.load_secrets([NS]))
    body = cluster.kube.get("secretsources", NS, "db")
    assert body is not None
    restarted.sync.observe_source(None, body)
    listed = restarted.sync.secrets[(NS, "db")]
    assert listed.metadata_only and listed.data == {} and listed.digests is None
    cluster.kube.requests.clear()
    restarted.sync_now()
    assert [r for r in cluster.kube.requests if r[1] == "secrets"] == [("get", "secrets", "db")]  # read, no write
    assert no_values(restarted.sync) and restarted.sync.secrets[(NS, "db")].digests is not None


def test_a_merge_reads_the_secret_only_when_it_writes() -> None:
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", {"password": "pw-1"})
    cluster.kube.put("secrets", {"metadata": {"name": "db", "namespace": NS, "annotations": {keys.ALLOW_SOURCE: "db"}},
                                 "data": {"other": "b3RoZXI="}})
    cluster.add_source(spec=vault_spec(creationPolicy="Merge"))
    cluster.start()
    cluster.sync_now()
    cluster.kube.requests.clear()
    cluster.sync_now()
    assert cluster.kube.requests == []
    cluster.backend.put("secret", "app/db", {"password": "pw-2"})
    cluster.sync_now()
    assert [r for r in cluster.kube.requests if r[1] == "secrets"] == [("get", "secrets", "db"),
                                                                       ("replace", "secrets", "db")]
    assert cluster.data() == {"other": b"other", "password": b"pw-2"} and no_values(cluster.sync)


def test_the_webhook_still_sees_the_keys() -> None:
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", {"user": "u", "password": "pw-1"})
    cluster.add_source()
    cluster.start()
    cluster.sync_now()
    assert cluster.sync.source_view(NS, "db").keys == ("password", "user")


def test_sources_alike_share_their_target_and_refresh_and_still_read_as_their_own() -> None:
    from rotor.engines.secretsource.view import parse_spec

    def spec(path: str, **extra: object) -> dict[str, object]:
        return {"provider": "vault", "serviceAccountName": "app", "vault": {"path": path, "role": "r"},
                "refresh": {"interval": "60s"}, **extra}

    a, b = parse_spec(spec("app/a"))[0], parse_spec(spec("app/b"))[0]
    other = parse_spec(spec("app/c", target={"name": "c-secret"}, refresh={"interval": "5m"}))[0]
    assert a is not None and b is not None and other is not None
    assert a.target is b.target and a.refresh is b.refresh  # one object for 10,000 sources alike
    assert a.vault is not None and b.vault is not None and (a.vault.path, b.vault.path) == ("app/a", "app/b")
    assert other.target.name == "c-secret" and other.refresh.interval == "5m" and other.target is not a.target
    assert a == parse_spec(spec("app/a"))[0] and a.model_dump() == parse_spec(spec("app/a"))[0].model_dump()


def test_a_tenants_large_targets_are_not_kept_for_sharing() -> None:
    # A target may carry 64 templates of 16 KiB: kept for sharing, 1,024 of them would outlive their
    # sources by gigabytes. Only small parts are shared; large ones stay their source's own.
    from rotor.engines.secretsource import view

    big = {"template": {"data": {f"k{i}": "{{ values.password }}" + "x" * 16000 for i in range(8)}}}
    spec = {"provider": "vault", "serviceAccountName": "app", "vault": {"path": "app/a", "role": "r"},
            "target": big}
    first, second = view.parse_spec(spec)[0], view.parse_spec(spec)[0]
    assert first is not None and second is not None and first == second
    assert first.target is not second.target
    assert all(len(key) <= view._SHARED_MAX_BYTES for key in view._SHARED)
