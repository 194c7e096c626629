"""Outages against the real stack: a watch gap (410 Gone), Vault sealed, Vault tokens revoked,
kube-apiserver restarted mid-rotation, etcd stalled. docs/reliability.md tabulates what they measure.

Each test runs its own `rotor run --namespace <test namespace>` process (a SIGSTOP is real; nothing else
acts on the namespace: the session's in-process operator is parked for this module). The faults are the
stack's own (tests.devenv.Stack: seal_vault, restart_apiserver, pause/resume, compact_etcd), each undone
in a finally block: later tests share this stack.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import kubernetes
import pytest

from tests.devenv import Stack, StackInfo

from .conftest import ready, secret_data, secret_source, vault_role, wait_for, wait_ready
from .test_delivery import consumers
from .test_rotation import Env, policy, rotate_now, status, wait_rotations
from .test_rotation import env as env  # the shared rotation fixture (re-exported: pytest finds it here)

pytestmark = pytest.mark.usefixtures("operator_aside")  # nothing else may act on these namespaces


class Operator:
    """`rotor run --namespace NAMESPACE` as its own process (it can be stopped with SIGSTOP), logging to a file."""

    def __init__(self, info: StackInfo, namespace: str, log: Path, **environ: str) -> None:
        self.log_path = log
        settings = {k: v for k, v in os.environ.items() if not k.startswith("ROTOR_")}
        settings.update({"KUBECONFIG": info.kubeconfig, "ROTOR_METRICS_PORT": "0", "ROTOR_LOG_LEVEL": "info",
                         "ROTOR_MIN_REFRESH_SECONDS": "1",
                         "ROTOR_VAULT_CONNECTIONS": json.dumps({"default": {"address": info.vault_addr}}),
                         **environ})
        with log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "rotor", "run", "--namespace", namespace],
                                            env=settings, stdout=out, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 30) -> None:
        wait_for(lambda: text in self.log() or self.process.poll() is not None, timeout, what=repr(text))
        assert text in self.log(), f"operator exited ({self.process.returncode}):\n{self.tail()}"

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def operator_process(info: StackInfo, env: Env, tmp_path: Path) -> Iterator[Any]:
    started: list[Operator] = []

    def start(**environ: str) -> Operator:
        process = Operator(info, env.namespace, tmp_path / f"rotor-{len(started)}.log", **environ)
        started.append(process)
        process.wait_log("Rotor started")
        return process

    yield start
    for process in started:
        process.stop()


def kv_source(custom: Any, vault: hvac.Client, env: Env, name: str, value: str, role: str | None = None,
              service_account: str = "app", refresh: str = "1s") -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/{name}", {"password": value}, mount_point="secret")
    secret_source(custom, env.namespace, name, {
        "provider": "vault", "serviceAccountName": service_account, "target": {"name": f"{name}-creds"},
        "vault": {"path": f"{env.namespace}/{name}", "role": role or env.reader_role},
        "refresh": {"interval": refresh, "jitter": 0}})


def kv_version(vault: hvac.Client, path: str) -> int:
    return int(vault.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")["data"]["current_version"])


def vault_requests(info: StackInfo, path: str) -> int:
    """Requests to PATH in Vault's audit log so far."""
    count = 0
    with open(info.vault_audit_log) as log:
        for line in log:
            entry = json.loads(line)
            if entry.get("type") == "request" and (entry.get("request") or {}).get("path") == path:
                count += 1
    return count


def secret_writes(info: StackInfo, namespace: str) -> dict[str, list[tuple[str, int]]]:
    """Every write of a Secret of NAMESPACE the API server answered, by Secret: (verb, code)."""
    writes: dict[str, list[tuple[str, int]]] = {}
    with open(info.kube_audit_log) as log:
        for line in log:
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if event.get("stage") == "ResponseComplete" and ref.get("resource") == "secrets" and \
                    ref.get("namespace") == namespace and event.get("verb") in ("create", "update", "patch", "delete"):
                writes.setdefault(str(ref.get("name")), []).append(
                    (event["verb"], int((event.get("responseStatus") or {}).get("code") or 0)))
    return writes


def test_a_watch_gap_forgets_what_was_deleted_in_it(stack: Stack, custom: Any, core: Any, vault: hvac.Client,
                                                    api_client: Any, env: Env, operator_process: Any) -> None:
    """While the operator is stopped (SIGSTOP) the API server restarts (every watch drops; its watch cache
    starts empty), a managed Secret, a RotationPolicy and a consuming Deployment are deleted and etcd is
    compacted: the watches resume with 410 Gone and Kopf re-lists, with no DELETED events. The Secret
    must come back, the policy must stop acting, the Deployment must no longer count as a consumer."""
    kv_source(custom, vault, env, "db", "pw-1", refresh="1h")
    kv_source(custom, vault, env, "gen", "v1", refresh="1h")
    rotor = operator_process(ROTOR_LOG_LEVEL="debug")
    for name in ("db", "gen"):
        wait_ready(custom, env.namespace, name, timeout=60)
    # Rotates every 3 s: a deleted policy that kept running would show in Vault at once.
    policy(custom, env.namespace, "gen", {"secretSourceRef": {"name": "gen"}, "strategy": "overlap",
                                          "schedule": {"interval": "3s"}, "overlap": {"window": "1s"},
                                          "identity": {"serviceAccountName": "rotator", "role": env.rotator_role}})
    wait_rotations(custom, env.namespace, "gen", 2, timeout=60)
    assert secret_data(core, env.namespace, "db-creds") == {"password": b"pw-1"}
    apps = kubernetes.client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(env.namespace, {  # restarted when db-creds changes: a consumer
        "metadata": {"name": "api", "annotations": {"rotor.dev/reload": "true"}},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": {"metadata": {"labels": {"app": "api"}},
                 "spec": {"containers": [{"name": "api", "image": "example/api:1",
                                          "envFrom": [{"secretRef": {"name": "db-creds"}}]}]}}}})
    wait_for(lambda: sum((consumers(custom, env.namespace, "db") or {}).values()) == 1, timeout=30,
             what="the Deployment counted as a consumer of db")

    rotor.pause()
    try:
        restart = stack.restart_apiserver(grace=2)  # first: the dropped watches must not carry the deletions
        core.delete_namespaced_secret("db-creds", env.namespace)
        custom.delete_namespaced_custom_object("rotor.dev", "v1alpha1", env.namespace, "rotationpolicies", "gen")
        apps.delete_namespaced_deployment("api", env.namespace)
        stack.compact_etcd()
    finally:
        rotor.resume()
    resumed = time.monotonic()
    rotor.wait_log("Restarting the watch-stream", timeout=30)  # Kopf's answer to 410 Gone: a re-list
    wait_for(lambda: secret_data(core, env.namespace, "db-creds"), timeout=30, what="db-creds re-created")
    recreated = time.monotonic() - resumed
    rotor.wait_log("RotationPolicy(s) gone while the watch was away", timeout=30)
    forgot = time.monotonic() - resumed
    path = f"secret/data/{env.namespace}/gen"
    version, reads_before = kv_version(vault, f"{env.namespace}/gen"), vault_requests(stack.info, path)
    time.sleep(8)  # more than two of its rotation intervals
    reads = vault_requests(stack.info, path) - reads_before
    print(f"\nwatch gap (SIGSTOP, API server restart {restart:.1f}s, etcd compacted): managed Secret re-created "
          f"{recreated:.1f}s and the deleted policy forgotten {forgot:.1f}s after the operator resumed; "
          f"{reads} reads of the deleted policy's path afterwards")
    assert secret_data(core, env.namespace, "db-creds") == {"password": b"pw-1"}
    assert "managed Secret(s) gone while the watch was away" in rotor.log()
    assert "workload(s) gone while the watch was away" in rotor.log()
    wait_for(lambda: sum((consumers(custom, env.namespace, "db") or {}).values()) == 0, timeout=10,
             what="the deleted Deployment no longer counted")
    assert kv_version(vault, f"{env.namespace}/gen") == version, "the deleted policy rotated again"
    # The source reads its path once an hour; Rotor must not read it for a deleted policy.
    assert reads == 0


SEAL_SECONDS = float(os.environ.get("ROTOR_SEAL_SECONDS") or 15)  # 600: the long run, outside the suite


@pytest.mark.timeout(SEAL_SECONDS + 420)
def test_vault_sealed_changes_no_secret_and_recovers(stack: Stack, custom: Any, core: Any, vault: hvac.Client,
                                                     env: Env, operator_process: Any) -> None:
    """Vault sealed for SEAL seconds (ROTOR_SEAL_SECONDS; 15 in the suite, 600 for the long run): every
    source says BackendUnavailable, no Secret is written; after the unseal each is Ready again."""
    seal_seconds = SEAL_SECONDS
    names = [f"s{i}" for i in range(3)]
    for name in names:
        kv_source(custom, vault, env, name, f"pw-{name}")
    operator_process()
    for name in names:
        wait_ready(custom, env.namespace, name, timeout=60)
    versions = {n: core.read_namespaced_secret(f"{n}-creds", env.namespace).metadata.resource_version for n in names}
    writes_before = secret_writes(stack.info, env.namespace)

    sealed_at = time.monotonic()
    stack.seal_vault()
    try:
        for name in names:
            wait_ready(custom, env.namespace, name, "False", "BackendUnavailable", timeout=seal_seconds)
        noticed = time.monotonic() - sealed_at
        time.sleep(max(0.0, seal_seconds - noticed))
    finally:
        stack.unseal_vault()
    unsealed = time.monotonic()
    recovered = {}
    for name in names:
        wait_ready(custom, env.namespace, name, "True", timeout=330)  # the retry backoff is capped at 300 s
        recovered[name] = time.monotonic() - unsealed
    after = {n: core.read_namespaced_secret(f"{n}-creds", env.namespace).metadata.resource_version for n in names}
    print(f"\nVault sealed {unsealed - sealed_at:.0f}s: BackendUnavailable on every "
          f"source within {noticed:.1f}s; 0 Secrets written; Ready again {min(recovered.values()):.1f}-"
          f"{max(recovered.values()):.1f}s after the unseal")
    assert after == versions, "a Secret was written while Vault was sealed"
    assert secret_writes(stack.info, env.namespace) == writes_before


def vault_tokens(vault: hvac.Client, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """Vault's tokens from Kubernetes logins of NAMESPACE's ServiceAccounts, by ServiceAccount."""
    found: dict[str, list[dict[str, Any]]] = {}
    for accessor in vault.list("auth/token/accessors")["data"]["keys"]:
        try:
            data = vault.auth.token.lookup_accessor(accessor)["data"]
        except hvac.exceptions.VaultError:  # revoked meanwhile
            continue
        meta = data.get("meta") or {}
        if meta.get("service_account_namespace") == namespace:
            found.setdefault(meta["service_account_name"], []).append({**data, "accessor": accessor})
    return found


def test_revoked_vault_tokens_cost_one_login_per_identity(stack: Stack, core: Any, custom: Any, vault: hvac.Client,
                                                          env: Env, operator_process: Any) -> None:
    """Three identities, two sources each, re-read every second; Vault's administrator revokes every token
    Rotor holds (by accessor): each identity logs in again exactly once, no source stays failed, no Secret
    changes."""
    identities = ["app", "app2", "app3"]
    for sa in identities[1:]:
        core.create_namespaced_service_account(env.namespace, {"metadata": {"name": sa}})
    roles = {sa: env.reader_role if sa == "app" else vault_role(vault, env.namespace, service_account=sa,
                                                                role=f"{env.namespace}-{sa}") for sa in identities}
    names = [f"{sa}-{i}" for sa in identities for i in (1, 2)]
    for name in names:
        sa = name.rsplit("-", 1)[0]
        kv_source(custom, vault, env, name, f"pw-{name}", role=roles[sa], service_account=sa)
    operator_process()
    for name in names:
        wait_ready(custom, env.namespace, name, timeout=60)
    before = vault_tokens(vault, env.namespace)
    assert {sa: len(tokens) for sa, tokens in before.items()} == {sa: 1 for sa in identities}, before
    versions = {n: core.read_namespaced_secret(f"{n}-creds", env.namespace).metadata.resource_version for n in names}

    revoked_at = time.monotonic()
    for tokens in before.values():
        for token in tokens:
            vault.auth.token.revoke_accessor(token["accessor"])

    def relogged() -> dict[str, list[dict[str, Any]]] | None:
        now = vault_tokens(vault, env.namespace)
        return now if set(now) == set(identities) else None

    after = wait_for(relogged, timeout=30, what="a new login of every identity")
    again = time.monotonic() - revoked_at
    time.sleep(5)  # five refreshes of every source on the new tokens
    after = vault_tokens(vault, env.namespace)
    failed = [n for n in names if (ready(custom, env.namespace, n) or {}).get("status") != "True"]
    print(f"\nVault tokens revoked by accessor: every identity logged in again within {again:.1f}s; logins after "
          f"the revocation per identity: {({sa: len(t) for sa, t in after.items()})}; sources not Ready: {failed}")
    assert {sa: len(tokens) for sa, tokens in after.items()} == {sa: 1 for sa in identities}, after
    assert failed == []
    assert {n: core.read_namespaced_secret(f"{n}-creds", env.namespace).metadata.resource_version
            for n in names} == versions


def test_an_api_server_restart_mid_rotation_completes_it_once(stack: Stack, custom: Any, core: Any,
                                                               vault: hvac.Client, env: Env,
                                                               operator_process: Any) -> None:
    """A rotation (overlap window 2 s) under way when kube-apiserver restarts: it completes, once."""
    kv_source(custom, vault, env, "gen", "v1", refresh="1h")
    operator_process()
    wait_ready(custom, env.namespace, "gen", timeout=60)
    base = kv_version(vault, f"{env.namespace}/gen")
    policy(custom, env.namespace, "gen", {"secretSourceRef": {"name": "gen"}, "strategy": "overlap",
                                          "schedule": {"interval": "720h"}, "overlap": {"window": "2s"},
                                          "identity": {"serviceAccountName": "rotator", "role": env.rotator_role}})
    wait_for(lambda: status(custom, env.namespace, "gen").get("nextRotationTime"), timeout=30, what="the policy idle")
    rotate_now(custom, env.namespace, "gen")
    wait_for(lambda: status(custom, env.namespace, "gen").get("phase") in ("Verifying", "Overlapping"),
             timeout=30, what="the rotation under way")
    phase = status(custom, env.namespace, "gen")["phase"]
    began = time.monotonic()
    restart = stack.restart_apiserver(grace=2)
    s = wait_rotations(custom, env.namespace, "gen", 1, timeout=120)
    done = time.monotonic() - began
    steps = [step["phase"] for step in s["rotation"]["steps"]]
    value = (secret_data(core, env.namespace, "gen-creds") or {}).get("password", b"")
    print(f"\nAPI server restarted ({restart:.1f}s) in phase {phase}: rotation complete {done:.1f}s after the "
          f"restart began; KV versions {base} -> {kv_version(vault, f'{env.namespace}/gen')}; steps {steps}")
    assert kv_version(vault, f"{env.namespace}/gen") == base + 1
    assert steps.count("Publishing") == 1 and steps.count("Complete") == 1, steps
    current = vault.secrets.kv.v2.read_secret_version(f"{env.namespace}/gen", mount_point="secret")["data"]["data"]
    assert value == current["password"].encode()


class EtcdStalls(threading.Thread):
    """SIGSTOP etcd for STALL seconds, SIGCONT for GAP seconds, until stopped (always leaves it running)."""

    def __init__(self, stack: Stack, stall: float = 2.0, gap: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.stack, self.stall, self.gap = stack, stall, gap
        self.stop_flag = threading.Event()
        self.count = 0

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.stack.pause("etcd")
            try:
                self.stop_flag.wait(self.stall)
            finally:
                self.stack.resume("etcd")
            self.count += 1
            self.stop_flag.wait(self.gap)

    def __enter__(self) -> EtcdStalls:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.join(10)
        self.stack.resume("etcd")


def test_etcd_stalls_lose_and_duplicate_no_write(stack: Stack, custom: Any, core: Any, vault: hvac.Client,
                                                 env: Env, operator_process: Any) -> None:
    """Eight sources re-read every second; five rounds of new values in Vault while etcd stalls 2 s in every
    3 s: each Secret ends with the last value, written exactly once per value (the API server's audit log)."""
    names = [f"e{i}" for i in range(8)]
    for name in names:
        kv_source(custom, vault, env, name, f"{name}-0")
    operator_process()
    for name in names:
        wait_ready(custom, env.namespace, name, timeout=60)
    rounds, took = 5, []
    with EtcdStalls(stack) as stalls:
        for n in range(1, rounds + 1):
            began = time.monotonic()
            for name in names:
                vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/{name}", {"password": f"{name}-{n}"},
                                                            mount_point="secret")
            for name in names:
                wanted = {"password": f"{name}-{n}".encode()}
                wait_for(lambda name=name, wanted=wanted: secret_data(core, env.namespace, f"{name}-creds") == wanted,
                         timeout=40, what=f"{name} round {n}")
            took.append(time.monotonic() - began)
    time.sleep(3)  # a late duplicate would land now
    writes = secret_writes(stack.info, env.namespace)
    ok = {name: [w for w in writes.get(f"{name}-creds", []) if w[1] < 300] for name in names}
    refused = {name: [w for w in writes.get(f"{name}-creds", []) if w[1] >= 300] for name in names}
    print(f"\netcd stalled {stalls.count}x2s: {rounds} rounds of 8 new values delivered in "
          f"{', '.join(f'{t:.1f}s' for t in took)}; successful writes per Secret "
          f"{sorted({len(w) for w in ok.values()})} (1 create + {rounds} updates), refused writes "
          f"{sum(len(w) for w in refused.values())}")
    for name in names:
        assert ok[name] == [("create", 201)] + [("update", 200)] * rounds, (name, writes.get(f"{name}-creds"))
        assert secret_data(core, env.namespace, f"{name}-creds") == {"password": f"{name}-{rounds}".encode()}
        assert get_synced(custom, env.namespace, name) == str(rounds + 1)


def get_synced(custom: Any, namespace: str, name: str) -> str:
    obj = custom.get_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources", name)
    return str((obj.get("status") or {}).get("syncedVersion"))


def test_sigterm_stops_the_operator_within_a_few_seconds_while_its_watches_are_open(
        custom: Any, core: Any, vault: hvac.Client, env: Env, operator_process: Any) -> None:
    """What the kubelet does on a rolling update: SIGTERM, then SIGKILL after the grace period. Rotor must
    exit well inside it, or every rollout waits 30 s and ends in a SIGKILL (a stream read blocked in a
    thread once held shutdown for the managed-Secret watch's whole 300 s)."""
    kv_source(custom, vault, env, "term", "pw-1")
    operator = operator_process()
    wait_for(lambda: secret_data(core, env.namespace, "term-creds") == {"password": b"pw-1"}, timeout=30,
             what="the Secret synced (its watch is open)")
    time.sleep(2)
    started = time.monotonic()
    operator.process.terminate()
    try:
        code = operator.process.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`rotor run` still running 15s after SIGTERM:\n{operator.tail()}") from None
    print(f"\nexited {code} in {time.monotonic() - started:.1f}s after SIGTERM")
