"""RotationPolicy against the real Vault and PostgreSQL: zero downtime, revocation, rollback, dry run.

There is no kubelet here: readers are a client thread that reads the target Secret the way a pod
reads a mounted file and logs in to PostgreSQL with it; workloads that must be "Ready" get their
status written by the test, standing in for the workload controller.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import hvac
import kubernetes
import psycopg
import pytest

from tests.devenv import StackInfo

from .conftest import secret_data, secret_source, vault_role, wait_for, wait_ready

pytestmark = pytest.mark.usefixtures("operator")


def rotator_policy(namespace: str, dyn_role: str = "") -> str:
    return "\n".join([
        f'path "secret/data/{namespace}/*" {{ capabilities = ["create", "update", "read"] }}',
        f'path "secret/metadata/{namespace}/*" {{ capabilities = ["create", "update", "read"] }}',
        f'path "secret/destroy/{namespace}/*" {{ capabilities = ["update"] }}',
        f'path "database/static-creds/{namespace}-*" {{ capabilities = ["read"] }}',
        f'path "database/rotate-role/{namespace}-*" {{ capabilities = ["update"] }}',
        f'path "database/creds/{namespace}-*" {{ capabilities = ["read"] }}',
        f'path "database/roles/{namespace}-*" {{ capabilities = ["read"] }}',
        'path "sys/leases/revoke" { capabilities = ["update"] }',
        'path "sys/leases/lookup" { capabilities = ["update"] }',
        'path "sys/leases/renew" { capabilities = ["update"] }',
        # Each lease is issued under an orphan token of its own (so it outlives the login token).
        'path "auth/token/create-orphan" { capabilities = ["create", "update"] }',
    ])


@dataclass
class Env:
    namespace: str
    reader_role: str
    rotator_role: str
    pg: StackInfo
    users: list[str] = field(default_factory=list)


@pytest.fixture
def env(core: Any, vault: hvac.Client, namespace: str, info: StackInfo) -> Env:
    for sa in ("app", "rotator"):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": sa}})
    reader = vault_role(vault, namespace)
    rotator = f"{namespace}-rotator"
    vault.sys.create_or_update_policy(name=rotator, policy=rotator_policy(namespace))
    vault.write(f"auth/kubernetes/role/{rotator}", bound_service_account_names=["rotator"],
                bound_service_account_namespaces=[namespace], policies=[rotator], audience="vault", ttl="1h")
    return Env(namespace, reader, rotator, info)


def pg_connect(info: StackInfo, user: str, password: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host=info.pg_host, port=info.pg_port, user=user, password=password, dbname="postgres",
                           connect_timeout=3)


def superuser(info: StackInfo) -> psycopg.Connection[Any]:
    conn = pg_connect(info, info.pg_user, info.pg_password)
    conn.autocommit = True  # roles must exist before Vault is told about them
    return conn


def can_login(info: StackInfo, user: str, password: str) -> bool:
    try:
        with pg_connect(info, user, password) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


class Reader(threading.Thread):
    """A client that, many times a second, reads the credentials from the target Secret and opens a new
    PostgreSQL connection with them (as an app reading a mounted Secret would)."""

    def __init__(self, core: Any, info: StackInfo, namespace: str, secret: str) -> None:
        super().__init__(daemon=True)
        self.core, self.info, self.namespace, self.secret = core, info, namespace, secret
        self.stop_flag = threading.Event()
        self.ok = 0
        self.failed: list[str] = []
        self.users: set[str] = set()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            data = secret_data(self.core, self.namespace, self.secret) or {}
            user, password = data.get("username", b"").decode(), data.get("password", b"").decode()
            try:
                with pg_connect(self.info, user, password) as conn:
                    conn.execute("SELECT 1")
                self.ok += 1
                self.users.add(user)
            except psycopg.OperationalError as exc:
                self.failed.append(f"{user}: {str(exc).splitlines()[0][:120]}")
            time.sleep(0.05)

    def attempts(self) -> int:
        return self.ok + len(self.failed)

    def __enter__(self) -> Reader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.join(10)


def more_reads(reader: Reader, count: int = 5) -> None:
    """Let the reader try COUNT more logins (on what the last rotation left) before it stops."""
    start = reader.attempts()
    wait_for(lambda: reader.attempts() >= start + count, what=f"{count} more reads")


def policy(custom: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "rotationpolicies", {
        "apiVersion": "rotor.dev/v1alpha1", "kind": "RotationPolicy", "metadata": {"name": name}, "spec": spec})


def status(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "rotationpolicies", name)
    return dict(obj.get("status") or {})


def rotate_now(custom: Any, namespace: str, name: str) -> None:
    custom.patch_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "rotationpolicies", name,
                                          {"metadata": {"annotations": {"rotor.dev/rotate-now": uuid.uuid4().hex}}})


def wait_rotations(custom: Any, namespace: str, name: str, count: int, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        s = status(custom, namespace, name)
        return s if s.get("rotations", 0) >= count and s.get("phase") == "Complete" else None

    try:
        result: dict[str, Any] = wait_for(check, timeout, what=f"{count} rotations of {namespace}/{name}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {status(custom, namespace, name)}") from None
    return result


def wait_phase(custom: Any, namespace: str, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    result: dict[str, Any] = wait_for(lambda: (s := status(custom, namespace, name)).get("phase") == phase and s,
                                      timeout, what=f"phase {phase}")
    return result


def source_spec(env: Env) -> dict[str, Any]:
    return {"provider": "vault", "serviceAccountName": "app",
            "vault": {"path": f"{env.namespace}/db", "role": env.reader_role},
            "target": {"name": "db-creds"}, "refresh": {"interval": "1h"}}


def static_roles(vault: hvac.Client, env: Env) -> list[str]:
    roles = []
    with superuser(env.pg) as conn:
        for color in ("blue", "green"):
            user = f"u_{env.namespace.replace('-', '_')}_{color}"
            conn.execute(f'CREATE ROLE "{user}" WITH LOGIN PASSWORD \'initial-{uuid.uuid4().hex}\'')
            role = f"{env.namespace}-{color}"
            vault.write(f"database/static-roles/{role}", db_name="postgres", username=user, rotation_period="24h")
            roles.append(role)
            env.users.append(user)
    return roles


def test_overlap_with_alternating_static_roles_has_zero_failed_logins(custom: Any, core: Any, vault: hvac.Client,
                                                                      env: Env) -> None:
    blue, green = static_roles(vault, env)
    creds = vault.read(f"database/static-creds/{blue}")["data"]
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/db", {"username": creds["username"],
                                                "password": creds["password"]}, mount_point="secret")
    secret_source(custom, env.namespace, "db", source_spec(env))
    wait_ready(custom, env.namespace, "db")
    policy(custom, env.namespace, "db", {
        "secretSourceRef": {"name": "db"}, "strategy": "overlap", "schedule": {"interval": "720h"},
        "identity": {"serviceAccountName": "rotator", "role": env.rotator_role},
        "generator": {"type": "backend"}, "overlap": {"window": "3s", "staticRoles": [blue, green]},
        "verify": {"timeout": "30s"}, "deadline": "2m"})
    durations: list[float] = []
    with Reader(core, env.pg, env.namespace, "db-creds") as reader:
        for n in range(1, 4):
            before = secret_data(core, env.namespace, "db-creds") or {}
            rotate_now(custom, env.namespace, "db")
            s = wait_rotations(custom, env.namespace, "db", n)
            assert [step["phase"] for step in s["rotation"]["steps"]][-6:] == [
                "Publishing", "Propagating", "Verifying", "Overlapping", "Revoking", "Complete"]
            # After the overlap window the old credential is rejected by PostgreSQL.
            assert not can_login(env.pg, before["username"].decode(), before["password"].decode())
            after = secret_data(core, env.namespace, "db-creds") or {}
            assert can_login(env.pg, after["username"].decode(), after["password"].decode())
            assert after["username"] != before["username"]  # blue/green alternate
            durations.append(_when(s["rotation"]["steps"][-1]["time"]) - _when(s["rotation"]["startedAt"]))
        more_reads(reader)
    print(f"\noverlap zero-downtime: {reader.ok} logins, {len(reader.failed)} failed; longest rotation "
          f"{max(durations):.1f}s (3 s of it the overlap window)")
    assert reader.failed == [] and reader.ok > 50
    assert reader.users == set(env.users)
    assert "password" not in str(s["rotation"]) and all(u not in str(s) for u in ("initial-",))


def _when(stamp: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def dynamic_role(vault: hvac.Client, env: Env, ttl: str = "1h") -> str:
    role = f"{env.namespace}-dyn"
    vault.write(f"database/roles/{role}", db_name="postgres", default_ttl=ttl, max_ttl="24h",
                creation_statements=['CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' '
                                     "VALID UNTIL '{{expiration}}';"])
    return role


def leases(vault: hvac.Client, role: str) -> list[str]:
    try:
        return list(vault.sys.list_leases(f"database/creds/{role}")["data"]["keys"])
    except hvac.exceptions.InvalidPath:
        return []


def dynamic_pg_roles(info: StackInfo) -> int:
    with superuser(info) as conn:
        row = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%'").fetchone()
    return int(row[0]) if row else 0


def test_dynamic_credentials_rotate_per_lease_with_zero_failed_logins(custom: Any, core: Any, vault: hvac.Client,
                                                                      env: Env) -> None:
    role = dynamic_role(vault, env)
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/db", {"host": "127.0.0.1"}, mount_point="secret")
    secret_source(custom, env.namespace, "db", source_spec(env))
    wait_ready(custom, env.namespace, "db")
    roles_before = dynamic_pg_roles(env.pg)
    policy(custom, env.namespace, "db", {
        "secretSourceRef": {"name": "db"}, "strategy": "dynamic", "schedule": {"interval": "720h"},
        "identity": {"serviceAccountName": "rotator", "role": env.rotator_role},
        "dynamic": {"role": role}, "overlap": {"window": "3s"}, "verify": {"timeout": "30s"}, "deadline": "2m"})
    wait_rotations(custom, env.namespace, "db", 1)  # no lease yet: the first one is issued right away
    with Reader(core, env.pg, env.namespace, "db-creds") as reader:
        for n in range(2, 5):
            before = secret_data(core, env.namespace, "db-creds") or {}
            rotate_now(custom, env.namespace, "db")
            s = wait_rotations(custom, env.namespace, "db", n)
            assert not can_login(env.pg, before["username"].decode(), before["password"].decode())
            assert s["active"]["lease"].startswith("sha256:")
        more_reads(reader)
    print(f"\ndynamic zero-downtime: {reader.ok} logins, {len(reader.failed)} failed")
    assert reader.failed == [] and reader.ok > 50 and len(reader.users) == 4
    assert len(leases(vault, role)) == 1, "exactly the active lease remains"
    from rotor.observability.metrics import REGISTRY

    assert (REGISTRY.get_sample_value("rotor_leases", {"mount": "database"}) or 0) >= 1
    assert dynamic_pg_roles(env.pg) - roles_before == 1
    assert all(lid not in str(s) for lid in leases(vault, role))


def test_versioned_keeps_n_versions_and_pinned_readers_keep_theirs(custom: Any, core: Any, vault: hvac.Client,
                                                                   env: Env) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/db", {"password": "v1"}, mount_point="secret")
    secret_source(custom, env.namespace, "db", source_spec(env))
    wait_ready(custom, env.namespace, "db")
    policy(custom, env.namespace, "db", {
        "secretSourceRef": {"name": "db"}, "strategy": "versioned", "schedule": {"interval": "720h"},
        "identity": {"serviceAccountName": "rotator", "role": env.rotator_role},
        "versioned": {"keep": 3}, "overlap": {"window": "1s"}, "generator": {"length": 20}})
    # The first rotation asked for as a person would: `rotor rotate <namespace>/<policy>`.
    cli = subprocess.run([sys.executable, "-m", "rotor", "rotate", f"{env.namespace}/db"], capture_output=True,
                         text=True, env={**os.environ, "KUBECONFIG": env.pg.kubeconfig}, timeout=60)
    assert cli.returncode == 0 and "rotation of" in cli.stdout, cli.stderr
    wait_rotations(custom, env.namespace, "db", 1)
    pinned_version = vault.secrets.kv.v2.read_secret_metadata(f"{env.namespace}/db", mount_point="secret")[
        "data"]["current_version"]
    secret_source(custom, env.namespace, "pinned", {**source_spec(env), "target": {"name": "pinned"},
                                                    "vault": {"path": f"{env.namespace}/db", "role": env.reader_role,
                                                              "version": pinned_version}})
    wait_ready(custom, env.namespace, "pinned")
    pinned_value = secret_data(core, env.namespace, "pinned")
    for n in range(2, 5):
        rotate_now(custom, env.namespace, "db")
        wait_rotations(custom, env.namespace, "db", n)
        meta = vault.secrets.kv.v2.read_secret_metadata(f"{env.namespace}/db", mount_point="secret")["data"]
        alive = sorted(int(v) for v, m in meta["versions"].items() if not m["destroyed"])
        assert alive == list(range(max(1, n - 1), n + 2)), alive  # the last 3 of versions 1..n+1
        if pinned_version in alive:  # a reader pinned to a kept version still has exactly it
            assert secret_data(core, env.namespace, "pinned") == pinned_value
    current = secret_data(core, env.namespace, "db-creds") or {}
    assert current["password"] != b"v1" and len(current["password"]) == 20
    assert pinned_value is not None and pinned_value["password"] != current["password"]


def deadline_exceeded(apps: Any, namespace: str, name: str) -> None:
    """Standing in for the Deployment controller: it gave up on the rollout (progressDeadlineSeconds), now."""
    deployment = apps.read_namespaced_deployment(name, namespace)
    apps.patch_namespaced_deployment_status(name, namespace, {"status": {
        "observedGeneration": deployment.metadata.generation, "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                        "message": f'ReplicaSet "{name}-1" has timed out progressing.',
                        "lastUpdateTime": _now(), "lastTransitionTime": _now()}]}})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def consumer(apps: Any, namespace: str, name: str = "api", secret: str = "db-creds") -> None:
    """A Deployment reading SECRET whose rollout never becomes Ready (no kubelet: its status is ours)."""
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
                     "name": name, "image": "example/api:1", "envFrom": [{"secretRef": {"name": secret}}]}]}}}})
    deployment = apps.read_namespaced_deployment(name, namespace)
    apps.patch_namespaced_deployment_status(name, namespace, {"status": {
        "observedGeneration": deployment.metadata.generation, "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": 1}})


def test_failed_verification_rolls_back(custom: Any, core: Any, api_client: Any, vault: hvac.Client,
                                        env: Env) -> None:
    """A consumer whose rollout the Deployment controller gave up on (ProgressDeadlineExceeded) rolls
    the rotation back within seconds, long before spec.verify.timeout."""
    from rotor.observability.metrics import REGISTRY

    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/db", {"password": "old-value"},
                                                mount_point="secret")
    secret_source(custom, env.namespace, "db", source_spec(env))
    wait_ready(custom, env.namespace, "db")
    apps = kubernetes.client.AppsV1Api(api_client)
    consumer(apps, env.namespace)
    rolled_back = REGISTRY.get_sample_value("rotor_rotation_rollbacks_total",
                                            {"strategy": "versioned", "reason": "verify"}) or 0
    policy(custom, env.namespace, "db", {
        "secretSourceRef": {"name": "db"}, "strategy": "versioned", "schedule": {"interval": "720h"},
        "identity": {"serviceAccountName": "rotator", "role": env.rotator_role},
        "overlap": {"window": "1s"}, "verify": {"timeout": "10m"}, "deadline": "1h"})
    rotate_now(custom, env.namespace, "db")
    wait_phase(custom, env.namespace, "db", "Verifying")
    deadline_exceeded(apps, env.namespace, "api")
    failed_at = time.monotonic()
    s = wait_phase(custom, env.namespace, "db", "RolledBack", timeout=30)
    noticed = time.monotonic() - failed_at
    print(f"\nrollout failure (ProgressDeadlineExceeded) to RolledBack: {noticed:.1f}s (verify.timeout 10m)")
    assert noticed < 10
    assert "consumers did not become Ready" in s["rotation"]["reason"]
    ready = next(c for c in s["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "RolledBack"
    wait_for(lambda: secret_data(core, env.namespace, "db-creds") == {"password": b"old-value"},
             what="readers back on the old value")
    meta = vault.secrets.kv.v2.read_secret_metadata(f"{env.namespace}/db", mount_point="secret")["data"]
    new_version = s["rotation"]["new"]["version"]
    assert meta["versions"][new_version]["destroyed"], "the new (unverified) value is revoked"
    assert not meta["versions"]["1"]["destroyed"], "the old value was never revoked"
    events = core.list_namespaced_event(env.namespace).items
    assert any(e.reason == "RolledBack" and e.involved_object.kind == "RotationPolicy" for e in events)
    assert (REGISTRY.get_sample_value("rotor_rotation_rollbacks_total",
                                      {"strategy": "versioned", "reason": "verify"}) or 0) == rolled_back + 1


def test_dry_run_touches_nothing(custom: Any, core: Any, vault: hvac.Client, env: Env) -> None:
    blue, green = static_roles(vault, env)
    creds = vault.read(f"database/static-creds/{blue}")["data"]
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/db", dict(creds), mount_point="secret")
    secret_source(custom, env.namespace, "db", source_spec(env))
    wait_ready(custom, env.namespace, "db")

    def snapshot() -> tuple[Any, ...]:
        meta = vault.secrets.kv.v2.read_secret_metadata(f"{env.namespace}/db", mount_point="secret")["data"]
        with superuser(env.pg) as conn:
            rows = conn.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s) ORDER BY 1",
                                (env.users,)).fetchall()
        return (meta["current_version"], rows, vault.read(f"database/static-creds/{green}")["data"]["password"],
                secret_data(core, env.namespace, "db-creds"))

    before = snapshot()
    policy(custom, env.namespace, "db", {
        "secretSourceRef": {"name": "db"}, "strategy": "overlap", "schedule": {"interval": "720h"},
        "identity": {"serviceAccountName": "rotator", "role": env.rotator_role}, "dryRun": True,
        "generator": {"type": "backend"}, "overlap": {"window": "1h", "staticRoles": [blue, green]}})
    rotate_now(custom, env.namespace, "db")
    s = wait_phase(custom, env.namespace, "db", "Complete")
    assert all("dry run" in step["message"] for step in s["rotation"]["steps"])
    assert any("would" in step["message"] for step in s["rotation"]["steps"])
    assert snapshot() == before
    assert s.get("rotations", 0) == 0


@pytest.mark.parametrize(("spec", "reason", "words"), [
    ({"schedule": {"cron": "61 * * * *"}}, "InvalidSpec", "spec.schedule.cron"),
    ({"schedule": {"interval": "5m"}, "overlap": {"window": "10m"}}, "InvalidSpec", "spec.overlap.window"),
    ({"secretSourceRef": {"name": "missing"}}, "SourceNotFound", "missing"),
], ids=["cron-typo", "window-longer-than-interval", "unknown-source"])
def test_bad_specs_get_a_clear_status_and_touch_nothing(custom: Any, core: Any, vault: hvac.Client, env: Env,
                                                        spec: dict[str, Any], reason: str, words: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/db", {"password": "p"}, mount_point="secret")
    secret_source(custom, env.namespace, "db", source_spec(env))
    wait_ready(custom, env.namespace, "db")
    policy(custom, env.namespace, "db", {"secretSourceRef": {"name": "db"}, "strategy": "versioned",
                                         "schedule": {"interval": "720h"}, **spec})
    rotate_now(custom, env.namespace, "db")

    def condition() -> dict[str, Any] | None:
        return next((c for c in status(custom, env.namespace, "db").get("conditions") or []
                     if c["type"] == "Ready" and c["reason"] == reason), None)

    found = wait_for(condition, what=reason)
    assert words in found["message"]
    meta = vault.secrets.kv.v2.read_secret_metadata(f"{env.namespace}/db", mount_point="secret")["data"]
    assert meta["current_version"] == 1
