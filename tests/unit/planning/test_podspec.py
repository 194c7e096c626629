"""The one pod-spec walker and the one workload-kind table."""

from __future__ import annotations

from typing import Any

from rotor.planning.podspec import (
    BY_KIND,
    RESTARTABLE,
    RUNTIME_USES,
    WORKLOAD_KINDS,
    pod_spec,
    pod_template,
    referenced_secrets,
    rollout_complete,
    rollout_failed,
    secret_references,
    secret_uses,
    workload_ready,
)

EVERY_WAY: dict[str, Any] = {
    "initContainers": [{"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "init-env", "key": "k"}}}]}],
    "containers": [{"env": [{"name": "B", "value": "literal"},
                            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "a-configmap", "key": "k"}}},
                            {"name": "D", "valueFrom": {"secretKeyRef": {"name": "env", "key": "k"}}}],
                    "envFrom": [{"secretRef": {"name": "env-from"}}, {"configMapRef": {"name": "cm"}}]}],
    "ephemeralContainers": [{"envFrom": [{"secretRef": {"name": "debug"}}]}],
    "volumes": [{"name": "v", "secret": {"secretName": "volume"}},
                {"name": "p", "projected": {"sources": [{"secret": {"name": "projected"}},
                                                        {"serviceAccountToken": {"path": "t"}}]}},
                {"name": "e", "emptyDir": {}}],
    "imagePullSecrets": [{"name": "registry"}, {}],
}


def test_the_walker_finds_every_way_a_pod_reads_a_secret() -> None:
    assert secret_references(EVERY_WAY) == {
        "init-env": {"env"}, "env": {"env"}, "env-from": {"envFrom"}, "debug": {"envFrom"},
        "volume": {"volume"}, "projected": {"projected"}, "registry": {"imagePullSecrets"}}
    assert secret_references({}) == {}


def test_runtime_uses_leave_image_pulls_out() -> None:
    assert referenced_secrets(EVERY_WAY) == ("debug", "env", "env-from", "init-env", "projected", "registry",
                                             "volume")
    assert "registry" not in referenced_secrets(EVERY_WAY, RUNTIME_USES)
    assert referenced_secrets(EVERY_WAY, frozenset({"imagePullSecrets"})) == ("registry",)


def test_one_secret_read_several_ways_is_reported_in_a_fixed_order() -> None:
    spec = {"containers": [{"envFrom": [{"secretRef": {"name": "db"}}],
                            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "db"}}], "imagePullSecrets": [{"name": "db"}]}
    assert secret_uses(spec, "db") == ["env", "envFrom", "volume", "imagePullSecrets"]
    assert secret_uses(spec, "other") == []


def test_the_table_says_where_each_kind_keeps_its_pod_template() -> None:
    inner = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}
    assert pod_template("Deployment", {"spec": {"template": inner}}) == inner
    assert pod_template("CronJob", {"spec": {"jobTemplate": {"spec": {"template": inner}}}}) == inner
    pod = {"metadata": {"name": "p"}, "spec": inner["spec"]}
    assert pod_template("Pod", pod) is pod and pod_spec("Pod", pod) == inner["spec"]
    assert pod_spec("Job", {"spec": {"template": inner}}) == inner["spec"]
    assert pod_spec("Deployment", {"spec": {"template": None}}) == {}
    assert RESTARTABLE == ("Deployment", "StatefulSet", "DaemonSet", "CronJob")
    assert [k.kind for k in WORKLOAD_KINDS][-1] == "Pod" and set(BY_KIND) == {k.kind for k in WORKLOAD_KINDS}
    assert (BY_KIND["CronJob"].api_version, BY_KIND["Pod"].api_version) == ("batch/v1", "v1")


def test_rollout_complete_per_kind() -> None:
    deployment = {"metadata": {"generation": 2}, "spec": {"replicas": 2},
                  "status": {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2}}
    assert rollout_complete("Deployment", deployment)
    deployment["status"]["updatedReplicas"] = 1
    assert not rollout_complete("Deployment", deployment)
    deployment["status"] = {"observedGeneration": 1}
    assert not rollout_complete("Deployment", deployment)  # the controller has not seen the new template
    sts = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "updateRevision": "r2",
                                                     "currentRevision": "r1"}}
    assert not rollout_complete("StatefulSet", sts)
    sts["status"]["currentRevision"] = "r2"
    assert rollout_complete("StatefulSet", sts)
    ds = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 3,
                                                    "updatedNumberScheduled": 2}}
    assert not rollout_complete("DaemonSet", ds)
    assert rollout_complete("CronJob", {"metadata": {"generation": 5}})  # the next Job takes the new template


def test_ready_and_failed_rollouts() -> None:
    assert not workload_ready("Deployment", {"spec": {"replicas": 2}, "status": {"availableReplicas": 1}})
    assert workload_ready("StatefulSet", {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}})
    assert workload_ready("CronJob", {})
    stuck = {"metadata": {"name": "web"}, "status": {"conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}}
    assert rollout_failed("Deployment", stuck) == "Deployment web: ProgressDeadlineExceeded"
    assert rollout_failed("StatefulSet", stuck) is None
