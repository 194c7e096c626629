"""Deliver: a secret written to Vault/OpenBao reaches a Kubernetes Secret and an annotated Deployment."""

from __future__ import annotations

import hashlib

import pytest

from .conftest import Target
from .scenario import has_nodes, tenant, wait_for


def test_vault_secret_is_delivered_and_follows_changes(target: Target) -> None:
    with tenant(target) as t:
        t.write("db", {"username": "app", "password": "first-password"})
        t.secret_source("db", "db", target={"name": "db-credentials"}, refresh={"interval": "2s", "jitter": 0})
        wait_for(lambda: t.ready("db"), 90, "SecretSource db Ready")
        assert t.secret("db-credentials") == {"username": b"app", "password": b"first-password"}
        status = t.custom.get_namespaced_custom_object("rotor.dev", "v1alpha1", t.namespace, "secretsources",
                                                       "db")["status"]
        assert "first-password" not in str(status), "status never carries a value"

        t.write("db", {"username": "app", "password": "second-password"})
        wait_for(lambda: t.secret("db-credentials") == {"username": b"app", "password": b"second-password"},
                 30, "the new value within the refresh interval")


def test_annotated_deployment_reads_the_secret(target: Target) -> None:
    """The app team's three lines: label rotor.dev/inject, annotation rotor.dev/secrets, nothing else."""
    if not has_nodes(target):
        pytest.skip("the cluster has no Ready node (the local control plane has no kubelet): the workload half "
                    "of this scenario runs on kind (`make e2e`) or a real cluster")
    if not target.app_image:
        pytest.skip("set E2E_APP_IMAGE to an image with python3 for the workload")
    with tenant(target) as t:
        t.write("db", {"password": "deployment-password"})
        t.secret_source("db", "db", target={"name": "db"})
        wait_for(lambda: t.ready("db"), 90, "SecretSource db Ready")
        labels = {"app": "reader"}
        # The pod prints a digest of what it reads, never the value itself.
        script = ("import hashlib,time;print('digest', hashlib.sha256(open('/var/run/secrets/rotor/db/password',"
                  "'rb').read()).hexdigest(), flush=True);time.sleep(3600)")
        t.apps.create_namespaced_deployment(t.namespace, {
            "metadata": {"name": "reader"},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": {**labels, "rotor.dev/inject": "true"},
                             "annotations": {"rotor.dev/secrets": "db"}},
                "spec": {"serviceAccountName": "app", "containers": [{
                    "name": "app", "image": target.app_image, "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", script],
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }]}}}})
        expected = hashlib.sha256(b"deployment-password").hexdigest()

        def pod_read_it() -> bool:
            for pod in t.core.list_namespaced_pod(t.namespace, label_selector="app=reader").items:
                if pod.status.phase == "Running":
                    log = t.core.read_namespaced_pod_log(pod.metadata.name, t.namespace, container="app")
                    if f"digest {expected}" in log:
                        return True
            return False

        wait_for(pod_read_it, 180, "the Deployment's pod reading the delivered value from its injected volume")
        (pod,) = t.core.list_namespaced_pod(t.namespace, label_selector="app=reader").items
        assert "deployment-password" not in str(pod.spec), "the pod spec references the Secret, never the value"
