"""Delivery into workloads against the real kube-apiserver and Vault, with Rotor running in-process.

What cannot run here: there is no kubelet and no controller-manager, so Deployments never get
Pods and nobody reports rollouts. Tests create Pods directly (the webhook sees them exactly as it
would see a ReplicaSet's), and where a rollout must finish they play the workload controller by
patching the workload's status, and say so.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import hvac
import kubernetes
import pytest

from rotor.observability.metrics import REGISTRY
from tests.devenv import StackInfo

from .conftest import OperatorLogs, RunningOperator, operator_settings, secret_source, wait_for, wait_ready

WINDOW = 2.0  # batch window of the operator under test
LIMIT_WINDOW, PER_NAMESPACE, CLUSTER = 3.0, 12, 20
PLURALS = {"Deployment": ("apps", "deployments"), "StatefulSet": ("apps", "statefulsets"),
           "DaemonSet": ("apps", "daemonsets"), "CronJob": ("batch", "cronjobs")}


@pytest.fixture(scope="module")
def rotor(info: StackInfo, operator_aside: None, operator_logs: OperatorLogs,
          api_client: kubernetes.client.ApiClient) -> Iterator[RunningOperator]:
    """Rotor with the webhook enabled and quick batches, in place of the session operator."""
    admission = kubernetes.client.AdmissionregistrationV1Api(api_client)
    try:
        with RunningOperator(operator_settings(
                info, webhook_enabled=True, webhook_port=0, reload_batch_seconds=WINDOW, reload_poll_seconds=1,
                restarts_per_namespace=PER_NAMESPACE, restarts_cluster=CLUSTER,
                restart_limit_window_seconds=LIMIT_WINDOW)) as running:
            wait_for(lambda: _webhook_registered(admission), 30, what="MutatingWebhookConfiguration rotor.dev")
            yield running
    finally:
        try:
            admission.delete_mutating_webhook_configuration("rotor.dev")
        except kubernetes.client.ApiException:
            pass


def _webhook_registered(admission: Any) -> bool:
    try:
        config = admission.read_mutating_webhook_configuration("rotor.dev")
    except kubernetes.client.ApiException:
        return False
    hooks = config.webhooks or []
    return bool(hooks) and all(h.client_config.ca_bundle and h.client_config.url for h in hooks)


@pytest.fixture
def pods_allowed(core: Any, namespace: str) -> str:
    """The ServiceAccount admission plugin needs the pod's ServiceAccount (no controller makes it here)."""
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
    return namespace


def vault_source(custom: Any, vault: hvac.Client, namespace: str, role: str, name: str,
                 values: dict[str, str]) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/{name}", values, mount_point="secret")
    secret_source(custom, namespace, name, {
        "provider": "vault", "serviceAccountName": "app", "vault": {"path": f"{namespace}/{name}", "role": role},
        "target": {"name": f"{name}-secret"}, "refresh": {"interval": "1s", "jitter": 0}})
    wait_ready(custom, namespace, name)


def labelled_pod(name: str, annotations: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"rotor.dev/inject": "true"} if labels is None else labels,
                         "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"},
                                    {"name": "proxy", "image": "registry.example/proxy:1"}]}}


def admissions() -> float:
    return sum(REGISTRY.get_sample_value("rotor_webhook_admissions_total", {"result": r}) or 0.0
               for r in ("injected", "rejected", "warned"))


def audit_events(info: StackInfo, namespace: str, resource: str) -> list[dict[str, Any]]:
    events = []
    with open(info.kube_audit_log) as log:
        for line in log:
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if ref.get("namespace") == namespace and ref.get("resource") == resource:
                events.append(event)
    return events


# -- injection ------------------------------------------------------------------------------------


def test_labelled_pod_is_stored_with_the_volume_and_no_value(rotor: RunningOperator, core: Any, custom: Any,
                                                             vault: hvac.Client, pods_allowed: str,
                                                             app_identity: str, info: StackInfo) -> None:
    namespace = pods_allowed
    vault_source(custom, vault, namespace, app_identity, "db", {"password": "pw-in-vault-1"})
    vault_source(custom, vault, namespace, app_identity, "api", {"token": "tok-in-vault-1"})
    before = REGISTRY.get_sample_value("rotor_webhook_admissions_total", {"result": "injected"}) or 0.0
    core.create_namespaced_pod(namespace, labelled_pod("web", {"rotor.dev/secrets": "db,api",
                                                               "rotor.dev/containers": "app"}))
    stored = core.read_namespaced_pod("web", namespace)
    volumes = {v.name: v.secret.secret_name for v in stored.spec.volumes if v.secret}
    assert volumes["rotor-db"] == "db-secret" and volumes["rotor-api"] == "api-secret"
    app, proxy = stored.spec.containers
    mounts = {m.name: (m.mount_path, m.read_only) for m in app.volume_mounts}
    assert mounts["rotor-db"] == ("/var/run/secrets/rotor/db", True)
    assert mounts["rotor-api"] == ("/var/run/secrets/rotor/api", True)
    assert not any(m.name.startswith("rotor-") for m in proxy.volume_mounts or [])
    assert stored.metadata.annotations["rotor.dev/injected"] == "volume:db,api"
    text = json.dumps(kubernetes.client.ApiClient().sanitize_for_serialization(stored))
    assert "pw-in-vault-1" not in text and "tok-in-vault-1" not in text
    assert (REGISTRY.get_sample_value("rotor_webhook_admissions_total", {"result": "injected"}) or 0) == before + 1

    core.create_namespaced_pod(namespace, labelled_pod("worker", {"rotor.dev/secrets": "db",
                                                                  "rotor.dev/inject-as": "env",
                                                                  "rotor.dev/env-prefix": "DB_"}))
    worker = core.read_namespaced_pod("worker", namespace)
    for container in worker.spec.containers:
        assert [(e.prefix, e.secret_ref.name) for e in container.env_from] == [("DB_", "db-secret")]
    assert "pw-in-vault-1" not in json.dumps(kubernetes.client.ApiClient().sanitize_for_serialization(worker))

    # The API server's audit log shows Rotor's webhook called for the labelled pods, not for others.
    core.create_namespaced_pod(namespace, labelled_pod("plain", {"rotor.dev/secrets": "db"}, labels={}))
    plain = core.read_namespaced_pod("plain", namespace)
    assert not plain.spec.volumes or not any(v.name.startswith("rotor-") for v in plain.spec.volumes)

    def creations() -> dict[str, dict[str, str]] | None:
        found = {e["objectRef"].get("name"): e.get("annotations") or {}
                 for e in audit_events(info, namespace, "pods")
                 if e["verb"] == "create" and e["stage"] == "ResponseComplete"}
        return found if {"web", "worker", "plain"} <= set(found) else None

    created = wait_for(creations, 10, what="audit events of the pod creations")
    assert any("rotor.dev" in v for k, v in created["web"].items() if k.startswith("mutation.webhook"))
    assert not any(k.startswith("mutation.webhook") for k in created["plain"])


def test_unknown_or_unready_source_rejects_the_pod_with_what_to_do(rotor: RunningOperator, core: Any, custom: Any,
                                                                   vault: hvac.Client, pods_allowed: str,
                                                                   app_identity: str) -> None:
    namespace = pods_allowed
    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.create_namespaced_pod(namespace, labelled_pod("web", {"rotor.dev/secrets": "nope"}))
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert f'SecretSource "nope" does not exist in namespace "{namespace}"' in message
    assert "create it, or remove it from the annotation rotor.dev/secrets" in message

    # A source whose role may not read the path: it exists, but is not Ready.
    secret_source(custom, namespace, "forbidden", {
        "provider": "vault", "serviceAccountName": "app", "vault": {"path": "elsewhere/db", "role": app_identity}})
    wait_ready(custom, namespace, "forbidden", "False")
    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.create_namespaced_pod(namespace, labelled_pod("web", {"rotor.dev/secrets": "forbidden"}))
    message = json.loads(refused.value.body)["message"]
    assert 'SecretSource "forbidden"' in message and "is not Ready" in message
    assert f"kubectl describe secretsource forbidden -n {namespace}" in message

    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.create_namespaced_pod(namespace, labelled_pod("web", {"rotor.dev/secrets": "db",
                                                                   "rotor.dev/inject-as": "files"}))
    assert "rotor.dev/inject-as: 'files' is not one of volume, env, env-keys" in json.loads(
        refused.value.body)["message"]
    assert core.list_namespaced_pod(namespace).items == []


# -- restarts on change ---------------------------------------------------------------------------


def workload(kind: str, name: str, template_labels: dict[str, str], template_annotations: dict[str, str],
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    pod = {"metadata": {"labels": {"app": name, **template_labels}, "annotations": template_annotations},
           "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}
    group, _ = PLURALS[kind]
    body: dict[str, Any] = {"apiVersion": f"{group}/v1", "kind": kind,
                            "metadata": {"name": name, "annotations": annotations or {}}}
    if kind == "CronJob":
        pod["spec"]["restartPolicy"] = "Never"
        body["spec"] = {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": pod}}}
    else:
        body["spec"] = {"selector": {"matchLabels": {"app": name}}, "template": pod}
        if kind == "StatefulSet":
            body["spec"]["serviceName"] = name
    return body


def create(custom: Any, namespace: str, body: dict[str, Any]) -> None:
    group, plural = PLURALS[body["kind"]]
    custom.create_namespaced_custom_object(group, "v1", namespace, plural, body)


def get(custom: Any, namespace: str, kind: str, name: str) -> dict[str, Any]:
    group, plural = PLURALS[kind]
    result: dict[str, Any] = custom.get_namespaced_custom_object(group, "v1", namespace, plural, name)
    return result


def template_hash(obj: dict[str, Any]) -> str | None:
    spec = obj["spec"]["jobTemplate"]["spec"] if "jobTemplate" in obj["spec"] else obj["spec"]
    return (spec["template"]["metadata"].get("annotations") or {}).get("rotor.dev/secrets-hash")


def adopted(obj: dict[str, Any]) -> bool:
    return "rotor.dev/applied-secrets" in (obj["metadata"].get("annotations") or {})


def finish_rollout(custom: Any, namespace: str, kind: str, name: str) -> None:
    """Play the workload controller (there is none here): report the current template rolled out."""
    obj = get(custom, namespace, kind, name)
    generation = obj["metadata"]["generation"]
    status: dict[str, Any] = {
        "Deployment": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1},
        "StatefulSet": {"observedGeneration": generation, "replicas": 1, "currentRevision": f"r{generation}",
                        "updateRevision": f"r{generation}"},
        "DaemonSet": {"observedGeneration": generation, "desiredNumberScheduled": 1, "updatedNumberScheduled": 1,
                      "currentNumberScheduled": 1, "numberMisscheduled": 0, "numberReady": 1},
    }[kind]
    group, plural = PLURALS[kind]
    custom.patch_namespaced_custom_object_status(group, "v1", namespace, plural, name, {"status": status})


def consumers(custom: Any, namespace: str, source: str) -> dict[str, int] | None:
    status = custom.get_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources",
                                                 source).get("status") or {}
    result: dict[str, int] | None = status.get("consumers")
    return result


def restarts(namespace: str, kind: str) -> float:
    return REGISTRY.get_sample_value("rotor_workload_restarts_total", {"namespace": namespace, "kind": kind}) or 0.0


def rolled(custom: Any, namespace: str, kind: str, name: str) -> bool:
    """Whether the pod template changed from the manifest (the only thing that makes a rollout).

    Not metadata.generation: the API server bumps a Deployment's generation on any annotation change,
    including the record Rotor keeps on the workload, without a new ReplicaSet.
    """
    return template_hash(get(custom, namespace, kind, name)) is not None


def test_workloads_roll_once_for_a_burst_of_changes(rotor: RunningOperator, custom: Any, vault: hvac.Client,
                                                    namespace: str, app_identity: str) -> None:
    vault_source(custom, vault, namespace, app_identity, "db", {"password": "one"})
    vault_source(custom, vault, namespace, app_identity, "api", {"token": "one"})
    inject = ({"rotor.dev/inject": "true"}, {"rotor.dev/secrets": "db,api"})
    kinds = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")
    for kind in kinds:
        create(custom, namespace, workload(kind, kind.lower(), *inject))
    wait_for(lambda: all(adopted(get(custom, namespace, k, k.lower())) for k in kinds), 20, what="adoption")
    for kind in kinds:  # adopted without a rollout: the templates are as written
        assert not rolled(custom, namespace, kind, kind.lower())
        if kind != "CronJob":
            finish_rollout(custom, namespace, kind, kind.lower())
    wait_for(lambda: consumers(custom, namespace, "db") == {"current": 4, "stale": 0}, 10, what="4 current")
    generations = {k: get(custom, namespace, k, k.lower())["metadata"]["generation"] for k in kinds}

    # A burst: three new versions over two sources, written at once.
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "two"}, mount_point="secret")
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/api", {"token": "two"}, mount_point="secret")
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "three"}, mount_point="secret")
    wait_for(lambda: all(rolled(custom, namespace, k, k.lower()) for k in kinds), 20, what="a rollout each")
    hashes = {k: template_hash(get(custom, namespace, k, k.lower())) for k in kinds}
    assert len(set(hashes.values())) == 1
    wait_for(lambda: consumers(custom, namespace, "db") == {"current": 1, "stale": 3}, 10, what="3 stale")
    time.sleep(2 * WINDOW + 1)  # long enough for any second batch to have been flushed
    for kind in kinds:
        obj = get(custom, namespace, kind, kind.lower())
        assert restarts(namespace, kind) == 1, f"{kind} rolled more than once"
        assert obj["metadata"]["generation"] == generations[kind] + 1 and template_hash(obj) == hashes[kind]
        if kind != "CronJob":
            finish_rollout(custom, namespace, kind, kind.lower())
    wait_for(lambda: consumers(custom, namespace, "api") == {"current": 4, "stale": 0}, 10, what="4 current")
    assert "three" not in json.dumps(get(custom, namespace, "Deployment", "deployment"))


def test_reload_never_is_honoured(rotor: RunningOperator, core: Any, custom: Any, namespace: str) -> None:
    core.create_namespaced_secret(namespace, {"metadata": {"name": "certs"}, "data": {"tls.crt": "djE="}})
    create(custom, namespace, workload("StatefulSet", "live-reader", {}, {"rotor.dev/reload-on": "certs"},
                                       {"rotor.dev/reload": "never"}))
    record = wait_for(lambda: (get(custom, namespace, "StatefulSet", "live-reader")["metadata"].get("annotations")
                               or {}).get("rotor.dev/applied-secrets"), 15, what="adoption")
    core.patch_namespaced_secret("certs", namespace, {"data": {"tls.crt": base64.b64encode(b"v2").decode()}})
    wait_for(lambda: (get(custom, namespace, "StatefulSet", "live-reader")["metadata"].get("annotations")
                      or {}).get("rotor.dev/applied-secrets") != record, 15, what="the new digest recorded")
    obj = get(custom, namespace, "StatefulSet", "live-reader")
    assert obj["metadata"]["generation"] == 1 and template_hash(obj) is None
    assert restarts(namespace, "StatefulSet") == 0


def test_operator_restart_restarts_nothing(rotor: RunningOperator, core: Any, custom: Any, namespace: str) -> None:
    core.create_namespaced_secret(namespace, {"metadata": {"name": "token"}, "data": {"t": "djE="}})
    create(custom, namespace, workload("Deployment", "web", {}, {}, {"rotor.dev/reload-on": "token"}))
    wait_for(lambda: adopted(get(custom, namespace, "Deployment", "web")), 15, what="adoption")
    core.patch_namespaced_secret("token", namespace, {"data": {"t": base64.b64encode(b"v2").decode()}})
    wait_for(lambda: rolled(custom, namespace, "Deployment", "web"), 15, what="a restart for a real change")
    before = get(custom, namespace, "Deployment", "web")
    rotor.restart()  # every watch event is replayed to the new process
    time.sleep(2 * WINDOW + 2)  # a batch window, a poll of unmanaged Secrets, and margin
    after = get(custom, namespace, "Deployment", "web")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["spec"]["template"] == before["spec"]["template"]
    # The new process still acts on real changes.
    core.patch_namespaced_secret("token", namespace, {"data": {"t": base64.b64encode(b"v3").decode()}})
    wait_for(lambda: template_hash(get(custom, namespace, "Deployment", "web")) != template_hash(before), 15,
             what="a restart after the operator restart")


def test_rate_limits_hold_under_fifty_simultaneous_changes(rotor: RunningOperator, core: Any, custom: Any,
                                                           namespace: str, make_namespace: Callable[[str], str],
                                                           info: StackInfo) -> None:
    second = make_namespace(f"{namespace}-b")
    layout = [(namespace, i) for i in range(30)] + [(second, i) for i in range(20)]
    for ns, i in layout:
        core.create_namespaced_secret(ns, {"metadata": {"name": f"s{i}"}, "data": {"v": "MA=="}})
        create(custom, ns, workload("Deployment", f"w{i}", {}, {}, {"rotor.dev/reload-on": f"s{i}"}))

    def all_adopted() -> bool:
        return all(adopted(d) for ns in (namespace, second) for d in
                   custom.list_namespaced_custom_object("apps", "v1", ns, "deployments")["items"])

    wait_for(all_adopted, 30, what="50 workloads adopted")
    deferred_before = sum(REGISTRY.get_sample_value("rotor_workload_restarts_deferred_total", {"scope": s}) or 0
                          for s in ("namespace", "cluster"))
    started = time.monotonic()
    for ns, i in layout:
        core.patch_namespaced_secret(f"s{i}", ns, {"data": {"v": base64.b64encode(b"1").decode()}})

    def restarted() -> int:
        return sum(1 for ns in (namespace, second) for d in
                   custom.list_namespaced_custom_object("apps", "v1", ns, "deployments")["items"]
                   if template_hash(d) is not None)

    wait_for(lambda: restarted() == 50, 60, interval=0.5, what="all 50 restarted")
    elapsed = time.monotonic() - started
    time.sleep(WINDOW)

    # The API server's audit log has each template patch with its time: check the sliding windows.
    patches = []
    for ns in (namespace, second):
        for event in audit_events(info, ns, "deployments"):
            rv = event.get("responseStatus", {}).get("code")
            if (event["verb"] == "patch" and event["stage"] == "ResponseComplete" and rv == 200
                    and not event["objectRef"].get("subresource")):
                patches.append((ns, event["objectRef"]["name"], _timestamp(event["stageTimestamp"])))
    made = sorted(p for p in patches if p[2] >= _first_secret_patch(info, namespace))
    assert len(made) == 50 and len({(ns, name) for ns, name, _ in made}) == 50  # each exactly once
    for start in [t for _, _, t in made]:
        in_window = [(ns, t) for ns, _, t in made if start <= t < start + LIMIT_WINDOW]
        assert len(in_window) <= CLUSTER
        for ns in (namespace, second):
            assert sum(1 for n, _ in in_window if n == ns) <= PER_NAMESPACE
    deferred = sum(REGISTRY.get_sample_value("rotor_workload_restarts_deferred_total", {"scope": s}) or 0
                   for s in ("namespace", "cluster")) - deferred_before
    assert deferred >= 50 - CLUSTER
    print(f"\n50 restarts in {elapsed:.1f}s under {CLUSTER}/{PER_NAMESPACE} per {LIMIT_WINDOW}s; "
          f"{deferred:.0f} deferrals")


def _timestamp(text: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _first_secret_patch(info: StackInfo, namespace: str) -> float:
    return min(_timestamp(e["stageTimestamp"]) for e in audit_events(info, namespace, "secrets")
               if e["verb"] == "patch")


def test_an_outage_blocks_only_labelled_pods(rotor: RunningOperator, core: Any, pods_allowed: str) -> None:
    """Rotor down: the webhook configuration stays, so labelled pods are refused instead of running
    without their secrets, and every other pod is created as usual (it never reaches the webhook)."""
    namespace = pods_allowed
    rotor.stop()
    try:
        core.create_namespaced_pod(namespace, labelled_pod("unrelated", {}, labels={"app": "other"}))
        with pytest.raises(kubernetes.client.ApiException) as refused:
            core.create_namespaced_pod(namespace, labelled_pod("web", {"rotor.dev/secrets": "db"}))
        assert "inject-secrets.rotor.dev" in json.loads(refused.value.body)["message"]
    finally:
        rotor.restart()
    assert core.read_namespaced_pod("unrelated", namespace).metadata.name == "unrelated"
