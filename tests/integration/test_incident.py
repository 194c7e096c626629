"""LeakIncident against the real control plane, Vault (with its file audit device) and PostgreSQL.

There is no kubelet here: workloads never run. Their pods' reads are stood in for by a client thread
that reads the target Secret and logs in to PostgreSQL with it, and the rollout status a controller
would write is written by the test (so a rotation's verification sees readers on the new value).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import kubernetes
import psycopg
import pytest

from rotor.config import Settings, VaultConnection
from rotor.planning.hashing import value_hmac
from tests.devenv import Stack, StackInfo

from .conftest import OperatorLogs, RunningOperator, secret_data, secret_source, wait_for, wait_ready

G, V = "rotor.dev", "v1alpha1"


@pytest.fixture(scope="module")
def rotor(info: StackInfo, operator_aside: None, operator_logs: OperatorLogs) -> Iterator[RunningOperator]:
    """Rotor reading the local Vault's audit log, in place of the session operator."""
    with RunningOperator(Settings(
            vault_connections={"default": VaultConnection(address=info.vault_addr, rate_per_second=500,
                                                          audit_log_file=Path(info.vault_audit_log),
                                                          login_check_hosts=(f"{info.pg_host}:{info.pg_port}",))},
            metrics_port=0, log_level="debug", min_refresh_seconds=1)) as running:
        yield running


@dataclass
class Env:
    namespace: str
    reader_role: str
    rotator_role: str
    info: StackInfo


@pytest.fixture
def env(rotor: RunningOperator, core: Any, vault: hvac.Client, namespace: str, info: StackInfo) -> Env:
    for sa in ("app", "rotator", "intruder"):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": sa}})
    reader = f"{namespace}-app"
    vault.sys.create_or_update_policy(name=reader, policy=f'path "secret/data/{namespace}/*" {{ capabilities = '
                                                          '["read"] }')
    vault.write(f"auth/kubernetes/role/{reader}", bound_service_account_names=["app", "intruder"],
                bound_service_account_namespaces=[namespace], policies=[reader], audience="vault", ttl="1h")
    rotator = f"{namespace}-rotator"
    vault.sys.create_or_update_policy(name=rotator, policy="\n".join([
        f'path "secret/data/{namespace}/*" {{ capabilities = ["create", "update", "read"] }}',
        f'path "secret/metadata/{namespace}/*" {{ capabilities = ["create", "update", "read"] }}',
        f'path "secret/destroy/{namespace}/*" {{ capabilities = ["update"] }}',
        f'path "database/creds/{namespace}-*" {{ capabilities = ["read"] }}',
        f'path "database/roles/{namespace}-*" {{ capabilities = ["read"] }}',
        'path "sys/leases/*" { capabilities = ["update"] }',
        # Each lease is issued under an orphan token of its own (so it outlives the login token).
        'path "auth/token/create-orphan" { capabilities = ["create", "update"] }',
    ]))
    vault.write(f"auth/kubernetes/role/{rotator}", bound_service_account_names=["rotator"],
                bound_service_account_namespaces=[namespace], policies=[rotator], audience="vault", ttl="1h")
    return Env(namespace, reader, rotator, info)


# -- helpers -------------------------------------------------------------------------------------------

def source(custom: Any, env: Env, name: str = "db") -> None:
    secret_source(custom, env.namespace, name, {
        "provider": "vault", "serviceAccountName": "app", "vault": {"path": f"{env.namespace}/{name}",
                                                                    "role": env.reader_role},
        "target": {"name": f"{name}-creds"}, "refresh": {"interval": "1h"}})
    wait_ready(custom, env.namespace, name)


def policy(custom: Any, env: Env, spec: dict[str, Any], name: str = "db") -> None:
    custom.create_namespaced_custom_object(G, V, env.namespace, "rotationpolicies", {
        "apiVersion": f"{G}/{V}", "kind": "RotationPolicy", "metadata": {"name": name},
        "spec": {"secretSourceRef": {"name": name}, "schedule": {"interval": "720h"},
                 "identity": {"serviceAccountName": "rotator", "role": env.rotator_role},
                 "verify": {"timeout": "30s"}, "deadline": "2m", **spec}})


def get(custom: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom.get_namespaced_custom_object(G, V, namespace, plural, name)
    return result


def incident(custom: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(G, V, namespace, "leakincidents", {
        "apiVersion": f"{G}/{V}", "kind": "LeakIncident", "metadata": {"name": name}, "spec": spec})


def wait_phase(custom: Any, namespace: str, name: str, phase: str, timeout: float = 90) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = get(custom, namespace, "leakincidents", name).get("status") or {}
        return status if status.get("phase") == phase else None

    result: dict[str, Any] = wait_for(check, timeout, what=f"incident {name} phase {phase}")
    return result


def hmac_key(core: Any) -> bytes:
    secret = core.read_namespaced_secret("rotor-hmac-key", "rotor-system")
    return base64.b64decode(secret.data["hmac-key"])


def events(core: Any, namespace: str, name: str) -> list[Any]:
    return [e for e in core.list_namespaced_event(namespace).items
            if e.involved_object.kind == "LeakIncident" and e.involved_object.name == name]


def actions(status: dict[str, Any]) -> list[str]:
    return [entry["action"] for entry in status["timeline"]]


def pod_spec(secret: str, via: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "example/app:1"}
    spec: dict[str, Any] = {"serviceAccountName": "app", "containers": [container]}
    if via == "env":
        container["env"] = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]
    elif via == "envFrom":
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    elif via == "volume":
        spec["volumes"] = [{"name": "s", "secret": {"secretName": secret}}]
    else:
        spec["volumes"] = [{"name": "s", "projected": {"sources": [{"secret": {"name": secret}}]}}]
    return spec


def workloads(api_client: Any, namespace: str, secret: str) -> set[tuple[str, str, str]]:
    """One consumer per kind and way of reading, an unrelated Deployment, and a bare Pod; the rollout
    status a controller would write (no controller manager runs here). Returns what must be found."""
    apps, batch, core = (kubernetes.client.AppsV1Api(api_client), kubernetes.client.BatchV1Api(api_client),
                         kubernetes.client.CoreV1Api(api_client))

    def template(name: str, via: str, reads: str = secret) -> dict[str, Any]:
        return {"metadata": {"labels": {"app": name}}, "spec": pod_spec(reads, via)}

    def selector(name: str) -> dict[str, Any]:
        return {"matchLabels": {"app": name}}

    apps.create_namespaced_deployment(namespace, {"metadata": {"name": "api"}, "spec": {
        "replicas": 1, "selector": selector("api"), "template": template("api", "env")}})
    apps.create_namespaced_deployment(namespace, {"metadata": {"name": "unrelated"}, "spec": {
        "replicas": 1, "selector": selector("unrelated"), "template": template("unrelated", "envFrom", "other")}})
    apps.create_namespaced_stateful_set(namespace, {"metadata": {"name": "worker"}, "spec": {
        "serviceName": "worker", "selector": selector("worker"), "template": template("worker", "envFrom")}})
    apps.create_namespaced_daemon_set(namespace, {"metadata": {"name": "agent"}, "spec": {
        "selector": selector("agent"), "template": template("agent", "volume")}})
    batch.create_namespaced_cron_job(namespace, {"metadata": {"name": "report"}, "spec": {
        "schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {
            "spec": {**pod_spec(secret, "projected"), "restartPolicy": "Never"}}}}}})
    core.create_namespaced_pod(namespace, {"metadata": {"name": "debug"}, "spec": pod_spec(secret, "volume")})
    for name, read, patch_status in (("api", apps.read_namespaced_deployment, apps.patch_namespaced_deployment_status),
                                     ("unrelated", apps.read_namespaced_deployment,
                                      apps.patch_namespaced_deployment_status)):
        generation = read(name, namespace).metadata.generation
        patch_status(name, namespace, {"status": {"observedGeneration": generation, "replicas": 1,
                                                  "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}})
    generation = apps.read_namespaced_stateful_set("worker", namespace).metadata.generation
    apps.patch_namespaced_stateful_set_status("worker", namespace, {"status": {
        "observedGeneration": generation, "replicas": 1, "readyReplicas": 1, "currentRevision": "r1",
        "updateRevision": "r1"}})
    generation = apps.read_namespaced_daemon_set("agent", namespace).metadata.generation
    apps.patch_namespaced_daemon_set_status("agent", namespace, {"status": {
        "observedGeneration": generation, "desiredNumberScheduled": 1, "updatedNumberScheduled": 1,
        "currentNumberScheduled": 1, "numberMisscheduled": 0, "numberReady": 1, "numberAvailable": 1}})
    return {("Deployment", "api", "env"), ("StatefulSet", "worker", "envFrom"), ("DaemonSet", "agent", "volume"),
            ("CronJob", "report", "projected"), ("Pod", "debug", "volume")}


def read_as(stack: Stack, env: Env, account: str, path: str) -> None:
    """A read of the secret straight from Vault, as NAMESPACE/ACCOUNT (what a leaked token would do)."""
    client = hvac.Client(url=env.info.vault_addr)
    jwt = stack.service_account_token(env.namespace, account, "vault", 600)
    client.auth.kubernetes.login(role=env.reader_role, jwt=jwt)
    client.secrets.kv.v2.read_secret_version(path, mount_point="secret", raise_on_deleted_version=True)


def no_value_in(text: str, *values: str) -> None:
    for value in values:
        assert value not in text


# -- the full runbook for a KV secret ------------------------------------------------------------------

def test_kv_runbook_after_rotation(stack: Stack, custom: Any, core: Any, api_client: Any, vault: hvac.Client,
                                   env: Env) -> None:
    ns = env.namespace
    leaked = f"tok-{uuid.uuid4().hex}"
    vault.secrets.kv.v2.create_or_update_secret(f"{ns}/db", {"token": leaked, "endpoint": "https://api.example"},
                                                mount_point="secret")
    source(custom, env)
    expected = workloads(api_client, ns, "db-creds")
    policy(custom, env, {"strategy": "versioned", "versioned": {"keep": 3}, "overlap": {"window": "2s"},
                         "generator": {"key": "token", "length": 24}})
    read_as(stack, env, "intruder", f"{ns}/db")  # during the exposure window
    incident(custom, ns, "ci-leak", {
        "secretSourceRef": {"name": "db"}, "severity": "critical",
        "exposure": {"where": "ci-logs", "reference": "https://ci.example/build/42"},
        "response": {"order": "afterRotation", "tightenInterval": "24h"}})
    status = wait_phase(custom, ns, "ci-leak", "Prevented")

    # Contained: the leaked value's keyed digest is on the denylist; nothing else is (the endpoint stays deliverable).
    assert value_hmac(hmac_key(core), leaked.encode()) in status["denylist"]
    assert value_hmac(hmac_key(core), b"https://api.example") not in status["denylist"]
    # Identified: exactly the consumers, how they read it, their ServiceAccounts; the exposed version.
    radius = status["blastRadius"]
    assert {(c["kind"], c["name"], c["via"][0]) for c in radius["consumers"]} == expected
    assert all(c["serviceAccount"] == "app" and c["namespace"] == ns for c in radius["consumers"])
    assert radius["serviceAccounts"] == [f"{ns}/app"] and radius["versions"] == ["1"] and radius["keys"] == ["token"]
    assert radius["targetSecret"] == f"{ns}/db-creds" and radius["backend"] == f"vault:default/secret/{ns}/db"
    # Rotated, then Revoked: readers have a new value; the exposed version is destroyed despite keep: 3.
    t = status["timestamps"]
    assert t["detected"] <= t["contained"] <= t["identified"] <= t["rotated"] <= t["revoked"] <= t["audited"] \
        <= t["prevented"]
    new = (secret_data(core, ns, "db-creds") or {})["token"].decode()
    assert new != leaked and len(new) == 24
    meta = vault.secrets.kv.v2.read_secret_metadata(f"{ns}/db", mount_point="secret")["data"]
    assert meta["versions"]["1"]["destroyed"]
    assert status["revocation"]["confirmed"] is True
    # Audited: the intruder's read and the operator's own (as the app) during the window, and nothing else.
    readers = {r["serviceAccount"] for r in status["auditReads"]}
    assert {f"{ns}/intruder", f"{ns}/app"} <= readers
    assert all(r["path"] == f"secret/data/{ns}/db" for r in status["auditReads"])
    window = radius["exposureWindow"]
    assert all(window["start"] <= r["time"] <= window["end"] for r in status["auditReads"])
    # Prevented: interval tightened, guardrails and recommendations written.
    assert get(custom, ns, "rotationpolicies", "db")["spec"]["schedule"] == {"interval": "24h"}
    assert any("tightened: 720h -> 24h" in g for g in status["guardrails"])
    assert any("masking" in r and "https://ci.example/build/42" in r for r in status["recommendations"])
    assert any(f"{ns}/intruder" in r for r in status["recommendations"])
    # Audit trail: each action once, in order, and as Events; never a value anywhere.
    assert actions(status) == ["Reported", "Contained", "Identified", "RotationRequested", "Rotated", "Revoked",
                               "Audited", "Prevented"]
    reasons = [e.reason for e in events(core, ns, "ci-leak")]
    assert {"Contained", "Identified", "Rotated", "Revoked", "Audited", "Prevented"} <= set(reasons)
    no_value_in(json.dumps(status) + str([e.message for e in events(core, ns, "ci-leak")]), leaked, new)

    # Someone writes the leaked value back: the sync path refuses it, the Secret keeps the new one.
    vault.secrets.kv.v2.create_or_update_secret(f"{ns}/db", {"token": leaked, "endpoint": "https://api.example"},
                                                mount_point="secret")
    custom.patch_namespaced_custom_object(G, V, ns, "secretsources", "db", {"spec": {"refresh": {"interval": "2s"}}})
    wait_ready(custom, ns, "db", "False", "Denylisted")
    assert (secret_data(core, ns, "db-creds") or {})["token"].decode() == new

    def refused() -> dict[str, Any] | None:
        conditions = (get(custom, ns, "leakincidents", "ci-leak").get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "LeakedValueRefused" and c["status"] == "True"), None)

    wait_for(refused, 30, what="LeakedValueRefused condition")
    assert any(e.reason == "LeakedValueRefused" and e.type == "Warning" for e in events(core, ns, "ci-leak"))
    assert any(e.reason == "Denylisted" and e.involved_object.kind == "SecretSource"
               for e in core.list_namespaced_event(ns).items)

    # Closed by a person: who and when are recorded (a field manager only as "unverified": this operator
    # runs without its webhook); the denylist is lifted, its record stays in the status.
    custom.patch_namespaced_custom_object(G, V, ns, "leakincidents", "ci-leak", {"spec": {"resolved": True}},
                                          field_manager="sre-alice")
    status = wait_phase(custom, ns, "ci-leak", "Resolved")
    assert status["resolvedBy"] == "unverified: sre-alice" and status["resolvedAt"] and status["denylist"]
    assert actions(status)[-2:] == ["LeakedValueRefused", "Resolved"]


# -- dynamic database credentials, both orders, with a reader --------------------------------------------

class Reader(threading.Thread):
    """Reads the target Secret and logs in to PostgreSQL with it, many times a second (a pod's view)."""

    def __init__(self, core: Any, info: StackInfo, namespace: str, secret: str) -> None:
        super().__init__(daemon=True)
        self.core, self.info, self.namespace, self.secret = core, info, namespace, secret
        self.stop_flag = threading.Event()
        self.ok, self.failed = 0, 0

    def run(self) -> None:
        while not self.stop_flag.is_set():
            data = secret_data(self.core, self.namespace, self.secret) or {}
            if login_works(self.info, data.get("username", b"").decode(), data.get("password", b"").decode()):
                self.ok += 1
            else:
                self.failed += 1
            time.sleep(0.05)


def login_works(info: StackInfo, user: str, password: str) -> bool:
    try:
        with psycopg.connect(host=info.pg_host, port=info.pg_port, user=user, password=password, dbname="postgres",
                             connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


@pytest.mark.parametrize("order", ["immediate", "afterRotation"])
def test_dynamic_credential_runbook(custom: Any, core: Any, api_client: Any, vault: hvac.Client, env: Env,
                                    order: str) -> None:
    ns = env.namespace
    role = f"{ns}-dyn"
    vault.write(f"database/roles/{role}", db_name="postgres", default_ttl="1h", max_ttl="24h",
                creation_statements=['CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' '
                                     "VALID UNTIL '{{expiration}}';"])
    vault.secrets.kv.v2.create_or_update_secret(f"{ns}/db", {"host": env.info.pg_host, "port": str(env.info.pg_port)},
                                                mount_point="secret")
    source(custom, env)
    apps = kubernetes.client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(ns, {"metadata": {"name": "api"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "api"}},
        "template": {"metadata": {"labels": {"app": "api"}}, "spec": pod_spec("db-creds", "envFrom")}}})
    generation = apps.read_namespaced_deployment("api", ns).metadata.generation
    apps.patch_namespaced_deployment_status("api", ns, {"status": {"observedGeneration": generation, "replicas": 1,
                                                                   "updatedReplicas": 1, "readyReplicas": 1,
                                                                   "availableReplicas": 1}})
    policy(custom, env, {"strategy": "dynamic", "dynamic": {"role": role}, "overlap": {"window": "2s"}})
    # A dynamic policy without a lease issues the first one right away.
    wait_for(lambda: (s := get(custom, ns, "rotationpolicies", "db").get("status") or {}).get("rotations") == 1
             and s.get("phase") == "Complete", 60, what="the first lease")
    wait_for(lambda: "username" in (secret_data(core, ns, "db-creds") or {}), what="credentials delivered")
    exposed = secret_data(core, ns, "db-creds") or {}
    user, password = exposed["username"].decode(), exposed["password"].decode()
    assert login_works(env.info, user, password)
    lease = get(custom, ns, "rotationpolicies", "db")["status"]["active"]["lease"]

    reader = Reader(core, env.info, ns, "db-creds")
    reader.start()
    try:
        wait_for(lambda: reader.ok >= 3, what="the reader logging in")
        incident(custom, ns, "leak", {"secretSourceRef": {"name": "db"}, "exposure": {"where": "git", "reference":
                                      "commit 1a2b3c"}, "response": {"order": order}})
        status = wait_phase(custom, ns, "leak", "Prevented")
        seen = reader.ok + reader.failed
        wait_for(lambda: reader.ok + reader.failed >= seen + 10, what="ten more reads after the runbook")
    finally:
        reader.stop_flag.set()
        reader.join(10)
    t = status["timestamps"]
    if order == "immediate":
        assert t["contained"] <= t["identified"] <= t["revoked"] <= t["rotated"]
        assert actions(status)[:5] == ["Reported", "Contained", "Identified", "Revoked", "RotationRequested"]
    else:
        assert t["contained"] <= t["identified"] <= t["rotated"] <= t["revoked"]
        assert reader.failed == 0, "afterRotation: readers moved before the leaked login was revoked"
    assert reader.ok > 10
    assert not login_works(env.info, user, password), "the leaked login is revoked"
    assert status["revocation"]["confirmed"] is True and "refused" in status["revocation"]["check"]
    assert status["blastRadius"]["leases"] == [lease]
    assert [(c["kind"], c["name"]) for c in status["blastRadius"]["consumers"]] == [("Deployment", "api")]
    current = secret_data(core, ns, "db-creds") or {}
    assert current["username"].decode() != user and login_works(env.info, current["username"].decode(),
                                                                current["password"].decode())
    assert value_hmac(hmac_key(core), password.encode()) in status["denylist"]
    assert any("git" in r or "repository" in r for r in status["recommendations"])
    no_value_in(json.dumps(status), password, current["password"].decode())


# -- ordering, unknown sources, the emergency rotation ----------------------------------------------------

def test_cli_report_of_an_unknown_source_gets_a_clear_status(custom: Any, env: Env,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from rotor.cli import main

    assert main(["leak", "report", f"{env.namespace}/missing", "--where", "ci-logs", "--ref", "https://ci/b/7",
                 "--severity", "critical", "--order", "immediate"]) == 0
    assert f"leakincident {env.namespace}/missing-leak-" in capsys.readouterr().out
    [created] = custom.list_namespaced_custom_object(G, V, env.namespace, "leakincidents")["items"]
    spec = created["spec"]
    assert spec["exposure"]["where"] == "ci-logs" and spec["exposure"]["reference"] == "https://ci/b/7"
    assert spec["severity"] == "critical" and spec["response"]["order"] == "immediate"
    name = created["metadata"]["name"]

    def condition() -> dict[str, Any] | None:
        status = get(custom, env.namespace, "leakincidents", name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"
                     and c["reason"] == "SourceNotFound"), None)

    found = wait_for(condition, what="SourceNotFound")
    assert "missing" in found["message"] and found["status"] == "False"
    status = get(custom, env.namespace, "leakincidents", name)["status"]
    assert status["timeline"][0]["actor"] == "unverified: rotor-cli" and status["phase"] == "Open"


def test_two_incidents_on_one_secret_are_ordered_and_use_an_emergency_rotation(custom: Any, core: Any,
                                                                               vault: hvac.Client, env: Env) -> None:
    ns = env.namespace
    leaked = f"pw-{uuid.uuid4().hex}"
    vault.secrets.kv.v2.create_or_update_secret(f"{ns}/db", {"password": leaked}, mount_point="secret")
    source(custom, env)
    spec = {"secretSourceRef": {"name": "db"}, "exposure": {"where": "log"},
            "response": {"identity": {"serviceAccountName": "rotator", "role": env.rotator_role},
                         "emergencyWindow": "1s"}}
    incident(custom, ns, "first", spec)
    incident(custom, ns, "second", spec)

    def waiting() -> dict[str, Any] | None:
        status = get(custom, ns, "leakincidents", "second").get("status") or {}
        return status if status.get("waitingFor") == "first" and status.get("phase") == "Waiting" else None

    assert "first" in next(c for c in wait_for(waiting, what="second waits for first")["conditions"]
                           if c["type"] == "Ready")["message"]
    first = wait_phase(custom, ns, "first", "Prevented")
    second = wait_phase(custom, ns, "second", "Prevented")
    assert first["timestamps"]["prevented"] <= second["timestamps"]["contained"]
    # No RotationPolicy and no consumers: revoke first (immediate), through an emergency rotation that is
    # removed afterwards.
    assert first["order"] == "immediate" and first["rotation"]["emergency"]
    assert first["timestamps"]["revoked"] <= first["timestamps"]["rotated"]
    with pytest.raises(kubernetes.client.ApiException):
        get(custom, ns, "rotationpolicies", "first-emergency")
    # The second one reported the same exposed version: its digests carry over from the first.
    assert second["exposedVersion"] == first["exposedVersion"] == "1"
    assert value_hmac(hmac_key(core), leaked.encode()) in second["denylist"]
    assert (secret_data(core, ns, "db-creds") or {})["password"].decode() != leaked


# -- restart mid-runbook ------------------------------------------------------------------------------------

def test_restart_mid_runbook_resumes_without_repeating_a_step(rotor: RunningOperator, custom: Any, core: Any,
                                                              vault: hvac.Client, env: Env) -> None:
    ns = env.namespace
    vault.secrets.kv.v2.create_or_update_secret(f"{ns}/db", {"password": "leaked-" + uuid.uuid4().hex},
                                                mount_point="secret")
    source(custom, env)
    policy(custom, env, {"strategy": "overlap", "overlap": {"window": "8s"}})
    incident(custom, ns, "leak", {"secretSourceRef": {"name": "db"}, "exposure": {"where": "image"},
                                  "response": {"order": "afterRotation"}})
    wait_for(lambda: (get(custom, ns, "rotationpolicies", "db").get("status") or {}).get("phase") == "Overlapping",
             60, what="rotation overlapping")
    # The incident notices the rotation's progress on its next step: wait for it (slow under load).
    before = wait_for(lambda: (s := get(custom, ns, "leakincidents", "leak").get("status") or {}).get(
        "step") == "revoke" and "rotated" in (s.get("timestamps") or {}) and s, 30, what="incident at revoke")
    rotor.restart()
    status = wait_phase(custom, ns, "leak", "Prevented")
    assert actions(status) == ["Reported", "Contained", "Identified", "RotationRequested", "Rotated", "Revoked",
                               "Audited", "Prevented"]
    assert {k: status["timestamps"][k] for k in before["timestamps"]} == before["timestamps"]
    assert get(custom, ns, "rotationpolicies", "db")["status"]["rotations"] == 1
    reasons = [e.reason for e in events(core, ns, "leak")]
    assert reasons.count("Contained") == 1 and reasons.count("Rotated") == 1 and reasons.count("Revoked") == 1


def test_after_a_restart_a_denylisted_value_is_refused_from_the_first_sync(rotor: RunningOperator, custom: Any,
                                                                          core: Any, vault: hvac.Client, env: Env,
                                                                          operator_logs: OperatorLogs) -> None:
    ns = env.namespace
    leaked = f"pw-{uuid.uuid4().hex}"
    vault.secrets.kv.v2.create_or_update_secret(f"{ns}/db", {"password": leaked}, mount_point="secret")
    source(custom, env)
    incident(custom, ns, "leak", {"secretSourceRef": {"name": "db"}, "exposure": {"where": "log"},
                                  "response": {"identity": {"serviceAccountName": "rotator", "role": env.rotator_role},
                                               "emergencyWindow": "1s"}})
    status = wait_phase(custom, ns, "leak", "Prevented")  # open: nobody resolved it
    assert value_hmac(hmac_key(core), leaked.encode()) in status["denylist"]
    new = (secret_data(core, ns, "db-creds") or {})["password"]
    assert new != leaked.encode()
    # The backend hands out the leaked value again; the running operator refuses it.
    vault.secrets.kv.v2.create_or_update_secret(f"{ns}/db", {"password": leaked}, mount_point="secret")
    custom.patch_namespaced_custom_object(G, V, ns, "secretsources", "db", {"spec": {"refresh": {"interval": "30m"}}})
    wait_ready(custom, ns, "db", "False", "Denylisted")
    version = core.read_namespaced_secret("db-creds", ns).metadata.resource_version

    mark = len(operator_logs.lines)
    rotor.restart()  # Kopf re-reads the SecretSource and the LeakIncident in parallel, in no set order

    def first_sync() -> str | None:
        return next((line for line in operator_logs.lines[mark:] if f"SecretSource {ns}/db" in line), None)

    assert "Denylisted" in wait_for(first_sync, 30, what="the source's first sync after the restart")
    lines = operator_logs.lines[mark:]
    loaded = next(i for i, line in enumerate(lines) if "LeakIncident(s) loaded" in line)
    assert loaded < lines.index(str(first_sync())), "the denylists were loaded before the first sync"
    assert ready_reason(custom, ns) == ("False", "Denylisted")
    assert core.read_namespaced_secret("db-creds", ns).metadata.resource_version == version, "Secret untouched"
    assert (secret_data(core, ns, "db-creds") or {})["password"] == new


def ready_reason(custom: Any, namespace: str, name: str = "db") -> tuple[str, str]:
    conditions = (get(custom, namespace, "secretsources", name).get("status") or {}).get("conditions") or []
    ready = next(c for c in conditions if c["type"] == "Ready")
    return ready["status"], ready["reason"]
