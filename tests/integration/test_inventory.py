"""`rotor inventory` against the real kube-apiserver, run as a user would: a separate process with
only a KUBECONFIG. Sources are synced by the real operator (Vault and the kubernetes backend).

No kubelet runs here, so Pods stay Pending; the inventory reads their specs, which is all it needs.
The RotationPolicy's last rotation is written by the test (as the rotation controller would after
a rotation), so that its age against the schedule, "overdue", is known in advance.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import kubernetes
import pytest

from tests.devenv import StackInfo

from .conftest import secret_source, wait_ready

pytestmark = pytest.mark.usefixtures("operator")

# Every value the estates hold; none may ever be printed. Fresh per estate: a LeakIncident in one
# test denylists its value for good, and the incident controller is running.
CANARIES: list[str] = []


def inventory(info: StackInfo, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": info.kubeconfig}
    result = subprocess.run([sys.executable, "-m", "rotor", "inventory", *args], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    for canary in CANARIES:
        encoded = base64.b64encode(canary.encode()).decode()
        assert canary not in result.stdout + result.stderr and encoded not in result.stdout + result.stderr
    return result


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_spec(**extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "example.invalid/app:1"}
    volumes = extra.pop("volumes", None)
    container.update(extra)
    # No controller-manager here creates the "default" ServiceAccount; the estate's "app" one exists.
    return {"serviceAccountName": "app", "containers": [container], **({"volumes": volumes} if volumes else {})}


@pytest.fixture
def estate(custom: Any, core: Any, api_client: Any, vault: hvac.Client, namespace: str,
           app_identity: str) -> str:
    """A namespace with managed and unmanaged secrets, consumers, a policy and incidents."""
    db_value, tls_value, legacy_value = (f"inv-canary-{kind}-{uuid.uuid4().hex[:12]}" for kind in ("db", "tls", "old"))
    CANARIES.extend((db_value, tls_value, legacy_value))
    core.patch_namespace(namespace, {"metadata": {"labels": {"rotor.dev/owner": "team-payments"}}})
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": db_value}, mount_point="secret")
    secret_source(custom, namespace, "db", {"provider": "vault", "serviceAccountName": "app",
                                            "vault": {"path": f"{namespace}/db", "role": app_identity},
                                            "target": {"name": "db-credentials"}})
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "upstream-tls", "annotations": {"rotor.dev/allowed-namespaces": namespace}},
        "stringData": {"tls.key": tls_value}})
    custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources", {
        "apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource",
        "metadata": {"name": "tls", "labels": {"rotor.dev/owner": "platform-tls"}},
        "spec": {"provider": "kubernetes", "kubernetes": {"namespace": namespace, "name": "upstream-tls"}}})

    apps, batch = kubernetes.client.AppsV1Api(api_client), kubernetes.client.BatchV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": pod_spec(envFrom=[{"secretRef": {"name": "db-credentials"}}])}}})
    batch.create_namespaced_cron_job(namespace, {
        "metadata": {"name": "nightly-report"}, "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {
            "template": {"spec": {"restartPolicy": "Never", **pod_spec(
                volumeMounts=[{"name": "creds", "mountPath": "/creds"}],
                volumes=[{"name": "creds", "projected": {"sources": [
                    {"secret": {"name": "db-credentials"}}]}}])}}}}}})
    core.create_namespaced_pod(namespace, {"metadata": {"name": "debug"}, "spec": pod_spec(
        env=[{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "tls", "key": "tls.key"}}}])})

    core.create_namespaced_secret(namespace, {"metadata": {"name": "legacy-api-key"},
                                              "stringData": {"key": legacy_value}})
    core.create_namespaced_pod(namespace, {"metadata": {"name": "legacy"}, "spec": pod_spec(
        volumeMounts=[{"name": "k", "mountPath": "/k"}],
        volumes=[{"name": "k", "secret": {"secretName": "legacy-api-key"}}])})
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "app-token", "annotations": {"kubernetes.io/service-account.name": "app"}},
        "type": "kubernetes.io/service-account-token"})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "sh.helm.release.v1.web.v1"},
                                              "type": "helm.sh/release.v1", "stringData": {"release": "x"}})

    now = datetime.now(UTC)
    custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "rotationpolicies", {
        "apiVersion": "rotor.dev/v1alpha1", "kind": "RotationPolicy", "metadata": {"name": "tls-rotation"},
        # Its maintenance window is closed now, so the rotation controller waits and only plans.
        "spec": {"secretSourceRef": {"name": "tls"}, "strategy": "versioned", "dryRun": True, "schedule": {
            "interval": "1h", "window": {"start": (now + timedelta(hours=12)).strftime("%H:%M"), "duration": "1h"}}}})
    custom.patch_namespaced_custom_object_status("rotor.dev", "v1alpha1", namespace, "rotationpolicies",
                                                 "tls-rotation", {"status": {
                                                     "lastRotationTime": iso(now - timedelta(hours=3)),
                                                     "nextRotationTime": iso(now - timedelta(hours=2))}})
    wait_ready(custom, namespace, "db")
    wait_ready(custom, namespace, "tls")
    # Reported after the first sync: the incident controller then denylists db's value.
    for name, spec in {"leak-open": {"secretSourceRef": {"name": "db"}},
                       "leak-by-secret": {"targetSecretRef": {"name": "db-credentials"}},
                       "leak-closed": {"secretSourceRef": {"name": "db"}, "resolved": True},
                       "leak-legacy": {"targetSecretRef": {"name": "legacy-api-key"}}}.items():
        custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "leakincidents", {
            "apiVersion": "rotor.dev/v1alpha1", "kind": "LeakIncident", "metadata": {"name": name},
            "spec": {**spec, "exposure": {"where": "git"}, "severity": "low"}})
    return namespace


def test_managed_inventory_as_json(info: StackInfo, estate: str) -> None:
    rows = {r["secretSource"]: r for r in json.loads(inventory(info, "-n", estate, "-o", "json").stdout)}
    assert set(rows) == {"db", "tls"}
    db, tls = rows["db"], rows["tls"]
    assert db["owner"] == "team-payments" and tls["owner"] == "platform-tls"  # namespace label vs source label
    assert db["backend"] == f"vault:default/secret/{estate}/db"
    assert tls["backend"] == f"kubernetes:{estate}/upstream-tls"
    assert (db["target"], tls["target"]) == ("db-credentials", "tls")
    assert db["consumers"] == ["Deployment/web", "CronJob/nightly-report"]
    assert tls["consumers"] == ["Pod/debug"]
    assert db["lastSync"] and tls["lastSync"] and tls["ready"] == "Synced"
    assert db["ready"] in ("Synced", "Denylisted")  # Denylisted once the incident controller contains the leak
    assert db["rotationPolicy"] is None and db["overdue"] is None
    assert tls["rotationPolicy"] == "tls-rotation" and tls["overdue"] is True and tls["lastRotation"]
    assert db["openIncidents"] == 2 and tls["openIncidents"] == 0


def test_managed_inventory_as_table_and_csv(info: StackInfo, estate: str) -> None:
    table = inventory(info, "-n", estate).stdout.splitlines()
    assert table[0].split()[:5] == ["NAMESPACE", "SOURCE", "OWNER", "BACKEND", "TARGET"]
    db = next(line.split() for line in table if line.split()[1] == "db")
    assert db[:6] == [estate, "db", "team-payments", f"vault:default/secret/{estate}/db", "db-credentials",
                      "Deployment/web,CronJob/nightly-report"]
    tls = next(line for line in table if line.split()[1] == "tls")
    assert " yes (" in tls  # overdue by about two hours
    rows = list(csv.DictReader(io.StringIO(inventory(info, "-n", estate, "-o", "csv").stdout)))
    assert [r["secretSource"] for r in rows] == ["db", "tls"]
    assert rows[0]["consumers"] == "Deployment/web;CronJob/nightly-report"


def test_unmanaged_secrets_with_consumers_and_system_secrets_on_request(info: StackInfo, estate: str) -> None:
    rows = json.loads(inventory(info, "-n", estate, "--unmanaged", "-o", "json").stdout)
    by_name = {r["secret"]: r for r in rows}
    assert set(by_name) == {"legacy-api-key", "upstream-tls"}  # db-credentials and tls are Rotor's
    legacy = by_name["legacy-api-key"]
    assert legacy["consumers"] == ["Pod/legacy"] and legacy["owner"] == "team-payments"
    assert legacy["openIncidents"] == 1 and legacy["type"] == "Opaque" and legacy["created"]
    everything = json.loads(inventory(info, "-n", estate, "--unmanaged", "--include-system", "-o", "json").stdout)
    assert {r["secret"]: r["type"] for r in everything}.items() >= {
        "app-token": "kubernetes.io/service-account-token",
        "sh.helm.release.v1.web.v1": "helm.sh/release.v1"}.items()


def test_all_namespaces_and_the_context_namespace(info: StackInfo, estate: str) -> None:
    rows = json.loads(inventory(info, "-A", "-o", "json").stdout)
    assert {"db", "tls"} <= {r["secretSource"] for r in rows if r["namespace"] == estate}
    # Without -n or -A the kubeconfig context's namespace is used, as kubectl does ("default" here).
    assert all(r["namespace"] == "default" for r in json.loads(inventory(info, "-o", "json").stdout))
