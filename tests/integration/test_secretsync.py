"""SecretSource end to end: real kube-apiserver, real Vault, Rotor running in-process."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import hvac
import kubernetes
import pytest

from rotor.observability.metrics import REGISTRY

from .conftest import (
    RunningOperator,
    get_source,
    ready,
    secret_data,
    secret_source,
    vault_role,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.usefixtures("operator")


def vault_spec(namespace: str, role: str, path: str = "db", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"provider": "vault", "serviceAccountName": "app",
                            "vault": {"path": f"{namespace}/{path}", "role": role}}
    for key, value in extra.items():
        if key == "vault":
            spec["vault"] = {**spec["vault"], **value}
        else:
            spec[key] = value
    return spec


def test_kv2_secret_is_delivered_with_status_and_no_value(custom: Any, core: Any, vault: hvac.Client,
                                                          namespace: str, app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"user": "app", "password": "pw-1"},
                                                mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity))
    condition = wait_ready(custom, namespace, "db")
    assert condition["reason"] == "Synced"
    assert secret_data(core, namespace, "db") == {"user": b"app", "password": b"pw-1"}
    status = get_source(custom, namespace, "db")["status"]
    assert status["syncedVersion"] == "1" and status["dataHmac"].startswith("sha256:")
    assert status["observedGeneration"] == 1 and status["targetSecret"] == "db"
    assert "pw-1" not in str(status)
    secret = core.read_namespaced_secret("db", namespace)
    assert secret.metadata.owner_references[0].kind == "SecretSource"
    assert secret.metadata.labels["rotor.dev/secret-source"] == "db"
    assert "pw-1" not in str(secret.metadata.annotations)
    events = core.list_namespaced_event(namespace).items
    assert any(e.reason == "Synced" and e.involved_object.name == "db" for e in events)


def test_backend_update_is_followed_within_the_refresh_interval(custom: Any, core: Any, vault: hvac.Client,
                                                                namespace: str, app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "v1"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity,
                                                      refresh={"interval": "2s", "jitter": 0}))
    wait_for(lambda: secret_data(core, namespace, "db") == {"password": b"v1"}, what="first value")
    propagated = REGISTRY.get_sample_value("rotor_propagation_seconds_count") or 0
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "v2"}, mount_point="secret")
    started = time.monotonic()
    wait_for(lambda: secret_data(core, namespace, "db") == {"password": b"v2"}, timeout=10, what="new value")
    assert time.monotonic() - started < 5
    wait_for(lambda: get_source(custom, namespace, "db")["status"].get("syncedVersion") == "2")
    assert (REGISTRY.get_sample_value("rotor_propagation_seconds_count") or 0) > propagated


def test_rotor_refresh_reads_the_backend_now_not_at_the_interval(info: Any, custom: Any, core: Any,
                                                                  vault: hvac.Client, namespace: str,
                                                                  app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "v1"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity, refresh={"interval": "1h"}))
    wait_for(lambda: secret_data(core, namespace, "db") == {"password": b"v1"}, what="first value")
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "v2"}, mount_point="secret")
    time.sleep(2)
    assert secret_data(core, namespace, "db") == {"password": b"v1"}  # the interval is an hour
    cli = subprocess.run([sys.executable, "-m", "rotor", "refresh", f"{namespace}/db"], capture_output=True,
                         text=True, env={**os.environ, "KUBECONFIG": info.kubeconfig}, timeout=60)
    assert cli.returncode == 0 and "refresh of" in cli.stdout, cli.stderr
    wait_for(lambda: secret_data(core, namespace, "db") == {"password": b"v2"}, timeout=15, what="new value")
    bad = subprocess.run([sys.executable, "-m", "rotor", "refresh", "db"], capture_output=True, text=True,
                         env={**os.environ, "KUBECONFIG": info.kubeconfig}, timeout=60)
    assert bad.returncode == 2 and "<namespace>/<name>" in bad.stderr


def test_kv_version_1(custom: Any, core: Any, vault: hvac.Client, namespace: str, app_identity: str) -> None:
    vault.secrets.kv.v1.create_or_update_secret(f"{namespace}/legacy", {"token": "t-1"}, mount_point="kv1")
    secret_source(custom, namespace, "legacy", vault_spec(namespace, app_identity, "legacy", vault={"mount": "kv1"}))
    wait_ready(custom, namespace, "legacy")
    assert secret_data(core, namespace, "legacy") == {"token": b"t-1"}


def test_pinned_version_stays_put(custom: Any, core: Any, vault: hvac.Client, namespace: str,
                                  app_identity: str) -> None:
    for value in ("one", "two", "three"):
        vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": value}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity, vault={"version": 2},
                                                      refresh={"interval": "1s", "jitter": 0}))
    wait_ready(custom, namespace, "db")
    assert secret_data(core, namespace, "db") == {"password": b"two"}
    time.sleep(2.5)
    assert secret_data(core, namespace, "db") == {"password": b"two"}
    assert get_source(custom, namespace, "db")["status"]["syncedVersion"] == "2"


def test_mappings_template_and_type(custom: Any, core: Any, vault: hvac.Client, namespace: str,
                                    app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"username": "app", "pass": "pw", "x": "y"},
                                                mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(
        namespace, app_identity,
        data=[{"key": "username", "property": "username"}, {"key": "password", "property": "pass"}],
        target={"name": "db-creds", "type": "kubernetes.io/basic-auth", "labels": {"team": "a"},
                "template": {"data": {"dsn": "postgres://{{ values.username }}:{{ values.password }}@db:5432/app"}}}))
    wait_ready(custom, namespace, "db")
    secret = core.read_namespaced_secret("db-creds", namespace)
    assert secret.type == "kubernetes.io/basic-auth" and secret.metadata.labels["team"] == "a"
    data = {k: base64.b64decode(v) for k, v in secret.data.items()}
    assert data == {"username": b"app", "password": b"pw", "dsn": b"postgres://app:pw@db:5432/app"}


def test_template_error_is_a_status_not_a_crash(custom: Any, core: Any, vault: hvac.Client, namespace: str,
                                                app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(
        namespace, app_identity, target={"template": {"data": {"dsn": "{{ values.pasword }}"}}}))
    condition = wait_ready(custom, namespace, "db", "False", "TemplateError")
    assert "pasword" in condition["message"] and "spec.target.template.data['dsn']" in condition["message"]
    assert secret_data(core, namespace, "db") is None


def test_kubernetes_backend_needs_the_owners_consent(custom: Any, core: Any, namespace: str,
                                                     make_namespace: Callable[[str], str]) -> None:
    shared = make_namespace(f"{namespace}-shared")
    core.create_namespaced_secret(shared, {"metadata": {"name": "registry"}, "stringData": {"token": "reg-1"}})
    secret_source(custom, namespace, "registry", {"provider": "kubernetes",
                                                  "kubernetes": {"namespace": shared, "name": "registry"},
                                                  "refresh": {"interval": "1s", "jitter": 0}})
    condition = wait_ready(custom, namespace, "registry", "False", "PermissionDenied")
    assert "rotor.dev/allowed-namespaces" in condition["message"]
    assert secret_data(core, namespace, "registry") is None
    core.patch_namespaced_secret("registry", shared,
                                 {"metadata": {"annotations": {"rotor.dev/allowed-namespaces": namespace}}})
    wait_ready(custom, namespace, "registry", timeout=60)
    assert secret_data(core, namespace, "registry") == {"token": b"reg-1"}


def test_unknown_path_is_not_found(custom: Any, core: Any, namespace: str, app_identity: str) -> None:
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity, "nope"))
    condition = wait_ready(custom, namespace, "db", "False", "NotFound")
    assert f"secret/{namespace}/nope" in condition["message"]
    assert secret_data(core, namespace, "db") is None


def test_a_role_that_may_not_read_the_path_is_denied_and_nothing_is_written(
        custom: Any, core: Any, vault: hvac.Client, namespace: str) -> None:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    role = vault_role(vault, namespace, paths=(f"secret/data/{namespace}/other",))
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, role))
    condition = wait_ready(custom, namespace, "db", "False", "PermissionDenied")
    assert "403" in condition["message"]
    assert secret_data(core, namespace, "db") is None
    events = core.list_namespaced_event(namespace).items
    assert any(e.reason == "PermissionDenied" and e.type == "Warning" for e in events)


def test_namespace_a_cannot_use_namespace_bs_role(custom: Any, core: Any, vault: hvac.Client,
                                                  namespace: str, make_namespace: Callable[[str], str]) -> None:
    other = make_namespace(f"{namespace}-b")
    for ns in (namespace, other):
        core.create_namespaced_service_account(ns, {"metadata": {"name": "app"}})
    b_role = vault_role(vault, other)
    vault.secrets.kv.v2.create_or_update_secret(f"{other}/db", {"password": "only-b"}, mount_point="secret")
    secret_source(custom, namespace, "steal", {"provider": "vault", "serviceAccountName": "app",
                                               "vault": {"path": f"{other}/db", "role": b_role}})
    condition = wait_ready(custom, namespace, "steal", "False", "PermissionDenied")
    assert "login" in condition["message"] and f"{namespace}/app" in condition["message"]
    assert secret_data(core, namespace, "steal") is None
    # The owner of the role still gets it.
    secret_source(custom, other, "db", {"provider": "vault", "serviceAccountName": "app",
                                        "vault": {"path": f"{other}/db", "role": b_role}})
    wait_ready(custom, other, "db")


def test_the_service_account_name_cannot_name_another_namespace(custom: Any, namespace: str) -> None:
    with pytest.raises(kubernetes.client.ApiException) as caught:
        secret_source(custom, namespace, "x", {"provider": "vault", "serviceAccountName": "other-ns:app",
                                               "vault": {"path": "a", "role": "r"}})
    assert "serviceAccountName" in caught.value.body


def test_drift_is_restored_after_edit_and_after_delete(custom: Any, core: Any, vault: hvac.Client, namespace: str,
                                                       app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "good"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity))
    wait_ready(custom, namespace, "db")
    core.patch_namespaced_secret("db", namespace, {"data": {"password": base64.b64encode(b"evil").decode()}})
    wait_for(lambda: secret_data(core, namespace, "db") == {"password": b"good"}, timeout=10, what="restore edit")
    core.delete_namespaced_secret("db", namespace)
    wait_for(lambda: secret_data(core, namespace, "db") == {"password": b"good"}, timeout=10, what="restore delete")


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_deletion_policy(custom: Any, core: Any, vault: hvac.Client, namespace: str, app_identity: str,
                         policy: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity, target={"deletionPolicy": policy}))
    wait_ready(custom, namespace, "db")
    custom.delete_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources", "db")

    def gone() -> bool:
        try:
            get_source(custom, namespace, "db")
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, what="SecretSource finalized")
    if policy == "Delete":
        assert secret_data(core, namespace, "db") is None
    else:
        secret = core.read_namespaced_secret("db", namespace)
        assert secret.metadata.owner_references is None
        assert "rotor.dev/secret-source" not in (secret.metadata.labels or {})
        assert secret_data(core, namespace, "db") == {"password": b"pw"}


def test_merge_writes_into_an_existing_secret(custom: Any, core: Any, vault: hvac.Client, namespace: str,
                                              app_identity: str) -> None:
    # Its owner opts in by naming the SecretSource; without that, Merge is a Conflict (test_tenant_sync).
    core.create_namespaced_secret(namespace, {"metadata": {"name": "app-config",
                                                           "annotations": {"rotor.dev/allow-source": "db"}},
                                              "stringData": {"mine": "keep"}})
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity,
                                                      target={"name": "app-config", "creationPolicy": "Merge"}))
    wait_ready(custom, namespace, "db")
    assert secret_data(core, namespace, "app-config") == {"mine": b"keep", "password": b"pw"}


def _syncs(result: str) -> float:
    return REGISTRY.get_sample_value("rotor_sync_total", {"provider": "vault", "result": result}) or 0.0


def audited_writes(info: Any, namespace: str, since: float) -> list[str]:
    """Write requests to NAMESPACE recorded by the API server's audit log since SINCE (unix time)."""
    import datetime
    import json

    writes = []
    with open(info.kube_audit_log) as log:
        for line in log:
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            when = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if (ref.get("namespace") == namespace and event["verb"] in ("create", "update", "patch", "delete")
                    and when.timestamp() >= since):
                writes.append(f"{event['verb']} {ref.get('resource')}/{ref.get('subresource', '')} {ref.get('name')}")
    return writes


def test_no_kubernetes_writes_when_nothing_changed(info: Any, custom: Any, core: Any, vault: hvac.Client,
                                                   namespace: str, app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity,
                                                      refresh={"interval": "1s", "jitter": 0}))
    wait_ready(custom, namespace, "db")
    time.sleep(1.5)  # let the first status write and its watch event settle
    syncs, since = _syncs("unchanged"), time.time()
    time.sleep(4.5)
    assert _syncs("unchanged") - syncs >= 3, "the source was not refreshed"
    # The API server's own audit log: no write of any kind to this namespace while refreshing.
    assert audited_writes(info, namespace, since) == []


def test_vault_outage_keeps_the_secret_and_recovers(stack: Any, custom: Any, core: Any, vault: hvac.Client,
                                                    namespace: str, app_identity: str, operator_logs: Any) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "steady"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity,
                                                      refresh={"interval": "1s", "jitter": 0}))
    wait_ready(custom, namespace, "db")
    rv = core.read_namespaced_secret("db", namespace).metadata.resource_version
    stack.stop_vault()
    try:
        condition = wait_ready(custom, namespace, "db", "False", "BackendUnavailable", timeout=30)
        assert "unreachable" in condition["message"]
        marker = f"sync of SecretSource {namespace}/db failed"
        before = sum(marker in line for line in operator_logs.lines)
        time.sleep(6)
        # Backoff: a failing source costs one backend call per step (2, 4, 8 s ...), not one per second.
        attempts = sum(marker in line for line in operator_logs.lines) - before
        assert 1 <= attempts <= 3, attempts
        assert core.read_namespaced_secret("db", namespace).metadata.resource_version == rv
        assert secret_data(core, namespace, "db") == {"password": b"steady"}
    finally:
        stack.start_vault()
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "after"}, mount_point="secret")
    wait_for(lambda: secret_data(core, namespace, "db") == {"password": b"after"}, timeout=120, what="recovery")
    wait_ready(custom, namespace, "db")


def test_operator_restart_makes_no_writes(custom: Any, core: Any, vault: hvac.Client, namespace: str,
                                          app_identity: str, operator: RunningOperator) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity))
    wait_ready(custom, namespace, "db")
    time.sleep(1)
    rv = core.read_namespaced_secret("db", namespace).metadata.resource_version
    source_rv = get_source(custom, namespace, "db")["metadata"]["resourceVersion"]
    operator.restart()
    resumed = _syncs("unchanged")
    wait_for(lambda: _syncs("unchanged") > resumed, what="the restarted operator re-checked its sources")
    time.sleep(2)
    assert core.read_namespaced_secret("db", namespace).metadata.resource_version == rv
    assert get_source(custom, namespace, "db")["metadata"]["resourceVersion"] == source_rv
    assert ready(custom, namespace, "db") is not None


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_a_renamed_target_leaves_the_old_secret_to_its_deletion_policy(custom: Any, core: Any, vault: hvac.Client,
                                                                       namespace: str, app_identity: str,
                                                                       policy: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw"}, mount_point="secret")
    secret_source(custom, namespace, "db", vault_spec(namespace, app_identity, target={"deletionPolicy": policy}))
    wait_ready(custom, namespace, "db")
    custom.patch_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources", "db",
                                          {"spec": {"target": {"name": "db-v2"}}})
    wait_for(lambda: secret_data(core, namespace, "db-v2") == {"password": b"pw"}, what="the new target")
    wait_for(lambda: get_source(custom, namespace, "db")["status"].get("targetSecret") == "db-v2")
    if policy == "Delete":
        wait_for(lambda: secret_data(core, namespace, "db") is None, what="the old target deleted")
    else:
        def released() -> bool:
            meta = core.read_namespaced_secret("db", namespace).metadata
            return not meta.owner_references and "rotor.dev/secret-source" not in (meta.labels or {})

        wait_for(released, what="the old target released")
        assert secret_data(core, namespace, "db") == {"password": b"pw"}
    wait_ready(custom, namespace, "db")


def test_a_template_bomb_fails_in_about_a_second_while_other_sources_sync(custom: Any, core: Any,
                                                                          vault: hvac.Client, namespace: str,
                                                                          app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw"}, mount_point="secret")
    # Loops the sandbox's cooperative checks never see: the rendering process is killed at the deadline.
    bomb = "{% set x = values.password * 200000 %}{% for a in x %}{% for b in x %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    secret_source(custom, namespace, "bomb", vault_spec(namespace, app_identity,
                                                        target={"template": {"data": {"x": bomb}}}))
    for i in range(5):
        secret_source(custom, namespace, f"quiet-{i}", vault_spec(namespace, app_identity))
    condition = wait_ready(custom, namespace, "bomb", "False", "TemplateError", timeout=20)
    assert "CPU time" in condition["message"] and time.monotonic() - started < 10
    for i in range(5):
        wait_ready(custom, namespace, f"quiet-{i}", timeout=10)
    assert secret_data(core, namespace, "bomb") is None
