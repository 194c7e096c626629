"""The inventory planner: owners, backends, consumers, rotation age and incidents from plain data."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from rotor.planning.inventory import (
    Cluster,
    SecretMeta,
    backend,
    consumers,
    managed,
    render_csv,
    render_json,
    render_table,
    unmanaged,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def obj(namespace: str, name: str, *, labels: dict[str, str] | None = None, controller: str | None = None,
        **rest: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": namespace, "name": name, "labels": labels or {},
                            "creationTimestamp": "2025-01-01T00:00:00Z"}
    if controller:
        meta["ownerReferences"] = [{"kind": controller, "name": "x", "controller": True}]
    return {"metadata": meta, **rest}


def source(namespace: str, name: str, spec: dict[str, Any], status: dict[str, Any] | None = None,
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    return obj(namespace, name, labels=labels, spec=spec, status=status or {})


VAULT = {"provider": "vault", "vault": {"path": "team-a/db", "role": "r"}, "target": {"name": "db-credentials"}}


def template(pod: dict[str, Any]) -> dict[str, Any]:
    return {"template": {"spec": pod}}


def test_every_way_a_pod_can_use_a_secret_counts_image_pulls_included() -> None:
    spec = {
        "initContainers": [{"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "from-init-env"}}}]}],
        "containers": [{"env": [{"name": "B", "value": "literal"},
                                {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "a-configmap"}}},
                                {"name": "D", "valueFrom": {"secretKeyRef": {"name": "from-env", "key": "k"}}}],
                        "envFrom": [{"secretRef": {"name": "from-envfrom"}}, {"configMapRef": {"name": "cm"}}]}],
        "ephemeralContainers": [{"envFrom": [{"secretRef": {"name": "from-debug"}}]}],
        "volumes": [{"name": "v", "secret": {"secretName": "from-volume"}},
                    {"name": "p", "projected": {"sources": [{"secret": {"name": "from-projected"}},
                                                            {"serviceAccountToken": {"path": "t"}}]}},
                    {"name": "e", "emptyDir": {}}],
        "imagePullSecrets": [{"name": "registry-login"}],
    }
    [found] = consumers({"Pod": [obj("a", "debug", spec=spec)]})
    assert found.secrets == {"from-init-env", "from-env", "from-envfrom", "from-debug", "from-volume",
                             "from-projected", "registry-login"}


def test_controlled_pods_are_listed_as_their_workload_and_bare_pods_as_pods() -> None:
    uses = {"containers": [{"envFrom": [{"secretRef": {"name": "db"}}]}]}
    found = consumers({
        "Deployment": [obj("a", "web", spec=template(uses))],
        "CronJob": [obj("a", "nightly", spec={"jobTemplate": {"spec": template(uses)}})],
        "Job": [obj("a", "nightly-123", controller="CronJob", spec=template(uses)),
                obj("a", "migrate", spec=template(uses))],
        "Pod": [obj("a", "web-abc", controller="ReplicaSet", spec=uses), obj("a", "debug", spec=uses),
                obj("a", "unrelated", spec={"containers": [{}]})],
    })
    assert sorted(map(str, found)) == ["CronJob/nightly", "Deployment/web", "Job/migrate", "Pod/debug"]


def test_backend_is_described_like_the_backends_do() -> None:
    assert backend(VAULT) == "vault:default/secret/team-a/db"
    assert backend({"provider": "vault", "vault": {"connection": "eu", "mount": "kv1", "path": "x/y"}}) == \
        "vault:eu/kv1/x/y"
    assert backend({"provider": "kubernetes", "kubernetes": {"namespace": "shared", "name": "tls"}}) == \
        "kubernetes:shared/tls"


def test_owner_from_source_label_then_secret_then_namespace_else_unowned() -> None:
    team_ns = {"a": obj("", "a", labels={"rotor.dev/owner": "ns-team"})}
    annotated_ns = {"a": {"metadata": {"name": "a", "annotations": {"owner": "payments"}}}}
    secret = SecretMeta("a", "db-credentials", labels={"rotor.dev/owner": "secret-team"})

    def owner_of(labels: dict[str, str] | None, secrets: list[SecretMeta], namespaces: dict[str, Any]) -> str:
        cluster = Cluster(sources=[source("a", "db", VAULT, labels=labels)], secrets=secrets, namespaces=namespaces)
        return managed(cluster, NOW)[0].owner

    assert owner_of({"rotor.dev/owner": "db-team"}, [secret], team_ns) == "db-team"
    assert owner_of(None, [secret], team_ns) == "secret-team"
    assert owner_of(None, [], team_ns) == "ns-team"
    assert owner_of(None, [], annotated_ns) == "payments"
    assert owner_of(None, [], {}) == "unowned"


def test_managed_row_joins_consumers_rotation_and_incidents() -> None:
    uses = template({"volumes": [{"name": "db", "secret": {"secretName": "db-credentials"}}]})
    cluster = Cluster(
        sources=[source("a", "db", VAULT, {"lastSyncTime": "2025-06-01T11:59:00Z",
                                           "conditions": [{"type": "Ready", "status": "True", "reason": "Synced"}]}),
                 source("a", "api", {"provider": "kubernetes", "kubernetes": {"namespace": "s", "name": "k"}})],
        workloads={"Deployment": [obj("a", "web", spec=uses)], "StatefulSet": [obj("b", "other", spec=uses)]},
        policies=[obj("a", "db-rotation", spec={"secretSourceRef": {"name": "db"}, "schedule": {"interval": "30d"},
                                                "strategy": "versioned"},
                      status={"lastRotationTime": "2025-04-01T12:00:00Z", "nextRotationTime": "2025-05-01T12:00:00Z"})],
        incidents=[obj("a", "leak-1", spec={"secretSourceRef": {"name": "db"}, "exposure": {"where": "git"}}),
                   obj("a", "leak-2", spec={"targetSecretRef": {"name": "db-credentials"}}),
                   obj("a", "old", spec={"secretSourceRef": {"name": "db"}, "resolved": True}),
                   obj("a", "closing", spec={"secretSourceRef": {"name": "db"}}, status={"phase": "Resolved"}),
                   obj("b", "elsewhere", spec={"secretSourceRef": {"name": "db"}})],
    )
    api, db = managed(cluster, NOW)
    assert (db.namespace, db.secret_source, db.target, db.backend) == \
        ("a", "db", "db-credentials", "vault:default/secret/team-a/db")
    assert db.consumers == ("Deployment/web",)  # the StatefulSet is in another namespace
    assert (db.ready, db.last_sync, db.rotation_policy) == ("Synced", "2025-06-01T11:59:00Z", "db-rotation")
    assert db.overdue is True and db.next_rotation == "2025-05-01T12:00:00Z"
    assert db.open_incidents == 2
    assert (api.secret_source, api.target, api.rotation_policy, api.overdue, api.consumers) == \
        ("api", "api", None, None, ())


def test_overdue_is_the_secrets_age_against_the_schedule() -> None:
    def row(schedule: dict[str, Any], status: dict[str, Any], created: str = "2025-05-30T12:00:00Z") -> Any:
        policy = obj("a", "p", spec={"secretSourceRef": {"name": "db"}, "schedule": schedule, "strategy": "overlap"},
                     status=status)
        policy["metadata"]["creationTimestamp"] = created
        return managed(Cluster(sources=[source("a", "db", VAULT)], policies=[policy]), NOW)[0]

    assert row({"interval": "7d"}, {}).overdue is False  # never rotated, created two days ago
    assert row({"interval": "7d"}, {}, created="2025-05-20T12:00:00Z").overdue is True
    old = row({"interval": "7d"}, {"lastRotationTime": "2025-05-01T00:00:00Z"})
    assert old.overdue is True and old.due == "2025-05-08T00:00:00Z" and old.next_rotation == old.due
    # A failed attempt makes the controller plan a retry; the secret is still past its age.
    retrying = row({"interval": "7d"}, {"lastRotationTime": "2025-05-01T00:00:00Z",
                                        "nextRotationTime": "2025-06-01T13:00:00Z"})
    assert retrying.overdue is True and retrying.next_rotation == "2025-06-01T13:00:00Z"
    assert row({"interval": "30d"}, {"lastRotationTime": "2025-05-15T00:00:00Z"}).overdue is False
    daily = row({"cron": "0 3 * * *"}, {"lastRotationTime": "2025-06-01T03:00:00Z"})
    assert daily.overdue is False and daily.due == "2025-06-02T03:00:00Z"
    late = row({"cron": "0 3 * * *"}, {"lastRotationTime": "2025-05-31T03:00:00Z"})
    assert late.overdue is True and late.due == "2025-06-01T03:00:00Z"
    assert row({"interval": "a week"}, {}).overdue is None  # a spec Rotor cannot read: unknown


def test_unmanaged_excludes_rotor_secrets_and_system_secrets_unless_asked() -> None:
    cluster = Cluster(
        sources=[source("a", "merge", {**VAULT, "target": {"name": "merged"}})],
        secrets=[SecretMeta("a", "db-credentials", labels={"app.kubernetes.io/managed-by": "rotor"}),
                 SecretMeta("a", "merged"),  # a SecretSource's target, even if someone dropped the label
                 SecretMeta("a", "legacy-api-key", created="2025-05-01T12:00:00Z"),
                 SecretMeta("a", "default-token", type="kubernetes.io/service-account-token"),
                 SecretMeta("a", "sh.helm.release.v1.app.v1", type="helm.sh/release.v1")],
        workloads={"Pod": [obj("a", "legacy", spec={"containers": [{"envFrom": [{"secretRef":
                                                                                 {"name": "legacy-api-key"}}]}]})]},
        incidents=[obj("a", "leak", spec={"targetSecretRef": {"name": "legacy-api-key"}})],
    )
    rows = unmanaged(cluster)
    assert [(r.secret, r.consumers, r.open_incidents) for r in rows] == [("legacy-api-key", ("Pod/legacy",), 1)]
    everything = unmanaged(cluster, include_system=True)
    assert [r.secret for r in everything] == ["default-token", "legacy-api-key", "sh.helm.release.v1.app.v1"]


def test_table_shows_ages_and_overdue_and_json_csv_carry_the_same_rows() -> None:
    cluster = Cluster(
        sources=[source("team-a", "db", VAULT, {"lastSyncTime": "2025-06-01T11:58:00Z"})],
        workloads={"Deployment": [obj("team-a", f"w{i}", spec=template(
            {"containers": [{"envFrom": [{"secretRef": {"name": "db-credentials"}}]}]})) for i in range(5)]},
        policies=[obj("team-a", "p", spec={"secretSourceRef": {"name": "db"}, "schedule": {"interval": "30d"},
                                           "strategy": "overlap"},
                      status={"lastRotationTime": "2025-05-01T12:00:00Z", "nextRotationTime": "2025-05-31T12:00:00Z"})],
    )
    rows = managed(cluster, NOW)
    table = render_table(rows, NOW).splitlines()
    assert table[0].split() == ["NAMESPACE", "SOURCE", "OWNER", "BACKEND", "TARGET", "CONSUMERS", "READY", "LAST",
                                "SYNC", "LAST", "ROTATION", "EXPIRES", "OVERDUE", "INCIDENTS"]
    assert table[1].split() == ["team-a", "db", "unowned", "vault:default/secret/team-a/db", "db-credentials",
                                "Deployment/w0,Deployment/w1,Deployment/w2,+2", "-", "2m", "31d", "-", "yes", "(24h)",
                                "0"]
    [record] = json.loads(render_json(rows))
    assert record["secretSource"] == "db" and record["overdue"] is True and len(record["consumers"]) == 5
    [line] = list(csv.DictReader(io.StringIO(render_csv(rows))))
    assert line["consumers"].count(";") == 4 and line["lastRotation"] == "2025-05-01T12:00:00Z"
    assert render_csv([], unmanaged=True).strip() == "namespace,secret,type,owner,consumers,created,openIncidents"
    assert render_table([], NOW, unmanaged=True).split() == ["NAMESPACE", "SECRET", "TYPE", "OWNER", "CONSUMERS",
                                                             "AGE", "INCIDENTS"]
