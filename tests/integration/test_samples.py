"""The samples (samples/*.yaml), as written, work together on the real stack: in namespace `demo`,
set up by hack/demo_tenant.py exactly as `make run` sets it up.

- SecretSource `db` delivers the demo login, and the Secret logs in to PostgreSQL;
- Deployment `web` is accepted as written, and a pod of its template gets the Secret from the webhook;
- LeakIncident `db-ci-log-leak` runs its runbook to Prevented, rotating through RotationPolicy `db`:
  the blue/green static-role rotation completes, the new login works, the leaked one is refused, and
  a reader logging in meanwhile never fails.

No kubelet or controller-manager here: the pod is created by the test, as a ReplicaSet would create it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import psycopg
import pytest
from hack import demo_tenant
from hack.demo import Reader

from rotor.config import Settings, VaultConnection
from tests.devenv import Stack, StackInfo

from .conftest import OperatorLogs, RunningOperator, wait_for, wait_ready

G, V, NS = "rotor.dev", "v1alpha1", demo_tenant.NAMESPACE


@pytest.fixture(scope="module")
def rotor(info: StackInfo, operator_aside: None, operator_logs: OperatorLogs,
          api_client: kubernetes.client.ApiClient) -> Iterator[RunningOperator]:
    """Rotor configured as `make run` configures it (webhook, audit log, login check), in place of the
    session operator; quick reload batches."""
    admission = kubernetes.client.AdmissionregistrationV1Api(api_client)
    connection = VaultConnection(address=info.vault_addr, rate_per_second=500,
                                 audit_log_file=Path(info.vault_audit_log),
                                 login_check_hosts=(f"{info.pg_host}:{info.pg_port}",))
    settings = Settings(vault_connections={"default": connection}, metrics_port=0, log_level="debug",
                        webhook_enabled=True, webhook_port=0, reload_batch_seconds=1)
    try:
        with RunningOperator(settings) as running:
            wait_for(lambda: _webhook_registered(admission), 30, what="MutatingWebhookConfiguration rotor.dev")
            yield running
    finally:
        try:
            admission.delete_mutating_webhook_configuration("rotor.dev")
        except kubernetes.client.ApiException:
            pass


def _webhook_registered(admission: Any) -> bool:
    try:
        hooks = admission.read_mutating_webhook_configuration("rotor.dev").webhooks or []
    except kubernetes.client.ApiException:
        return False
    return bool(hooks) and all(h.client_config.ca_bundle and h.client_config.url for h in hooks)


def test_every_kind_has_one_sample() -> None:
    kinds = [doc["kind"] for _, doc in demo_tenant.samples()]
    assert sorted(kinds) == ["Deployment", "LeakIncident", "RotationPolicy", "SecretSource"]


@pytest.mark.usefixtures("rotor")
def test_the_samples_work_together(stack: Stack, make_namespace: Any, custom: Any, core: Any) -> None:
    make_namespace(NS)
    demo_tenant.prepare(stack)
    for _, doc in demo_tenant.samples("SecretSource", "RotationPolicy", "Deployment"):
        demo_tenant.apply(stack, doc)

    blue = delivered_login(custom, core, stack.info)
    injected_pod(stack)
    with Reader(stack) as reader:
        wait_for(lambda: sum(reader.logins.values()) >= 2, 15, what="the reader's first logins")
        leak_runbook_rotates_and_prevents(stack, custom, core, blue)
    assert reader.failed == [] and sum(reader.logins.values()) > 10, reader.summary()
    assert set(reader.logins) == set(demo_tenant.STATIC_ROLES.values()), reader.summary()


def delivered_login(custom: Any, core: Any, info: StackInfo) -> tuple[str, str]:
    """SecretSource db: the Secret holds the KV login plus DATABASE_URL, and that login works."""
    wait_ready(custom, NS, "db")
    data = {k: base64.b64decode(v).decode() for k, v in core.read_namespaced_secret("db-credentials", NS).data.items()}
    assert sorted(data) == ["DATABASE_URL", "dbname", "host", "password", "port", "username"]
    assert data["username"] == "demo_blue"
    assert data["DATABASE_URL"] == (f"postgres://{data['username']}:{data['password']}@{info.pg_host}:"
                                    f"{info.pg_port}/postgres")
    assert can_login(info, data["username"], data["password"])
    return data["username"], data["password"]


def injected_pod(stack: Stack) -> None:
    """Deployment web stays as written; a pod of its template, created through the API server, gets
    the Secret mounted read-only by Rotor's webhook."""
    template = stack.api_request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/web")["spec"]["template"]
    assert not template["spec"].get("volumes"), "the Deployment itself is not mutated"
    pod = stack.api_request("POST", f"/api/v1/namespaces/{NS}/pods", {
        "metadata": {"name": "web-sample", "labels": template["metadata"]["labels"],
                     "annotations": template["metadata"]["annotations"]}, "spec": template["spec"]})
    volumes = [v for v in pod["spec"]["volumes"] if (v.get("secret") or {}).get("secretName") == "db-credentials"]
    assert len(volumes) == 1, pod["spec"]["volumes"]
    mounts = [m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == volumes[0]["name"]]
    assert mounts == [{"name": volumes[0]["name"], "mountPath": "/var/run/secrets/rotor/db", "readOnly": True}]
    assert pod["metadata"]["annotations"]["rotor.dev/injected"] == "volume:db"


def leak_runbook_rotates_and_prevents(stack: Stack, custom: Any, core: Any, leaked: tuple[str, str]) -> None:
    """LeakIncident db-ci-log-leak: Prevented, after RotationPolicy db moved readers to the green user
    and the leaked blue login was refused."""
    info = stack.info
    [(_, incident)] = demo_tenant.samples("LeakIncident")
    demo_tenant.apply(stack, incident)

    def prevented() -> dict[str, Any] | None:
        status = custom.get_namespaced_custom_object(G, V, NS, "leakincidents", "db-ci-log-leak").get("status") or {}
        return status if status.get("phase") == "Prevented" else None

    status = wait_for(prevented, 90, what="LeakIncident demo/db-ci-log-leak Prevented")
    assert [e["action"] for e in status["timeline"] if e["action"] in (
        "Contained", "Identified", "Rotated", "Revoked", "Audited", "Prevented")] == [
        "Contained", "Identified", "Rotated", "Revoked", "Audited", "Prevented"]
    assert status["revocation"]["confirmed"] is True, status["revocation"]
    assert status["blastRadius"]["staticRole"] == "demo-blue"

    policy = custom.get_namespaced_custom_object(G, V, NS, "rotationpolicies", "db")
    rotation = policy["status"]["rotation"]
    assert policy["status"]["phase"] == "Complete" and policy["status"]["rotations"] == 1
    assert [s["phase"] for s in rotation["steps"]][-6:] == [
        "Publishing", "Propagating", "Verifying", "Overlapping", "Revoking", "Complete"]
    assert (rotation["old"]["role"], rotation["new"]["role"]) == ("demo-blue", "demo-green")
    assert policy["spec"]["schedule"]["interval"] == "168h", "the incident tightened the schedule"
    data = {k: base64.b64decode(v).decode() for k, v in core.read_namespaced_secret("db-credentials", NS).data.items()}
    assert data["username"] == "demo_green" and can_login(info, data["username"], data["password"])
    assert not can_login(info, *leaked), "the leaked login is revoked"


def can_login(info: StackInfo, user: str, password: str) -> bool:
    try:
        with psycopg.connect(host=info.pg_host, port=info.pg_port, dbname="postgres", user=user, password=password,
                             connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False
