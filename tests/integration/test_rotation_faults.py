"""Rotation under faults, against the real Vault, PostgreSQL and API server: short-lived dynamic
leases kept alive for minutes, a crash between issuing a lease and recording it, Rotor's clock ten
minutes off, a person's `kv put` during a rotation, and two replicas both active.

Each test runs its own `rotor run --namespace <test namespace>` processes (a SIGKILL is real, a
clock skew is per process); the session's in-process operator is parked for this module so that
nothing else acts on these namespaces. docs/reliability.md tabulates what these tests measure.
"""

from __future__ import annotations

import json
import os
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

from tests.devenv import StackInfo

from .conftest import secret_data, secret_source, wait_for, wait_ready
from .test_rotation import (
    Env,
    Reader,
    can_login,
    consumer,
    deadline_exceeded,
    env,  # noqa: F401 - the shared rotation fixture
    leases,
    policy,
    rotate_now,
    source_spec,
    static_roles,
    status,
    wait_phase,
    wait_rotations,
)

NEW_HELD = {"Propagating", "Verifying", "Overlapping", "Revoking", "Failed"}


pytestmark = pytest.mark.usefixtures("operator_aside")  # nothing else may act on these namespaces


class Operator:
    """`rotor run --namespace NAMESPACE` as its own process, logging to a file under LOGS."""

    def __init__(self, info: StackInfo, namespace: str, logs: Path, name: str, **environ: str) -> None:
        self.log = logs / f"{name}.log"
        settings = {**os.environ, "KUBECONFIG": info.kubeconfig, "ROTOR_METRICS_PORT": "0",
                    "ROTOR_LOG_LEVEL": "info",
                    "ROTOR_VAULT_CONNECTIONS": json.dumps({"default": {"address": info.vault_addr}})}
        for key in ("ROTOR_FAULT_KILL_AT", "ROTOR_CLOCK_SKEW_SECONDS"):
            settings.pop(key, None)
        settings.update(environ)
        with self.log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "rotor", "run", "--namespace", namespace],
                                            env=settings, stdout=subprocess.DEVNULL, stderr=out)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def count(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def operators() -> Iterator[list[Operator]]:
    started: list[Operator] = []
    yield started
    for process in started:
        process.stop()


def start(started: list[Operator], info: StackInfo, rot: Env, tmp_path: Path, name: str,
          **environ: str) -> Operator:
    process = Operator(info, rot.namespace, tmp_path, name, **environ)
    started.append(process)
    return process


def audited(info: StackInfo, path: str) -> int:
    """Requests to PATH Vault answered (its file audit device)."""
    count = 0
    with open(info.vault_audit_log) as log:
        for line in log:
            entry = json.loads(line)
            if entry.get("type") == "response" and (entry.get("request") or {}).get("path") == path:
                count += 1
    return count


def status_leases(s: dict[str, Any]) -> set[str]:
    """The leases status says readers may hold (as rotor.planning.leases.held_leases)."""
    held = {(s.get("active") or {}).get("lease")}
    new = (s.get("rotation") or {}).get("new") or {}
    if s.get("phase") in NEW_HELD and new.get("version") != (s.get("active") or {}).get("version"):
        held.add(new.get("lease"))
    return {lease for lease in held if lease}


def dynamic_role(vault: hvac.Client, rot: Env, name: str, ttl: str, max_ttl: str) -> str:
    role = f"{rot.namespace}-{name}"
    vault.write(f"database/roles/{role}", db_name="postgres", default_ttl=ttl, max_ttl=max_ttl,
                creation_statements=['CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' '
                                     "VALID UNTIL '{{expiration}}';"])
    return role


def rotator_ttl(vault: hvac.Client, rot: Env, ttl: str) -> None:
    """The rotator identity's Vault login tokens live TTL (and cannot be renewed past it)."""
    vault.write(f"auth/kubernetes/role/{rot.rotator_role}", bound_service_account_names=["rotator"],
                bound_service_account_namespaces=[rot.namespace], policies=[rot.rotator_role], audience="vault",
                ttl=ttl, max_ttl=ttl)


def dynamic_source(custom: Any, vault: hvac.Client, rot: Env, name: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{rot.namespace}/{name}", {"host": "127.0.0.1"}, mount_point="secret")
    secret_source(custom, rot.namespace, name, {**source_spec(rot), "target": {"name": f"{name}-creds"},
                                                "vault": {"path": f"{rot.namespace}/{name}", "role": rot.reader_role}})


def dynamic_policy(custom: Any, rot: Env, name: str, role: str, **spec: Any) -> None:
    policy(custom, rot.namespace, name, {
        "secretSourceRef": {"name": name}, "strategy": "dynamic", "schedule": {"interval": "720h"},
        "identity": {"serviceAccountName": "rotator", "role": rot.rotator_role},
        "dynamic": {"role": role}, "overlap": {"window": "2s"}, "verify": {"timeout": "1m"}, "deadline": "5m",
        **spec})


class LeaseCount(threading.Thread):
    """Every half second: the role's leases Vault holds, and the leases status names."""

    def __init__(self, custom: Any, vault: hvac.Client, namespace: str, name: str, role: str) -> None:
        super().__init__(daemon=True)
        self.custom, self.vault, self.namespace, self.name, self.role = custom, vault, namespace, name, role
        self.samples: list[tuple[float, int, int, str]] = []  # (time, in Vault, in status, phase)
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(0.5):
            s = status(self.custom, self.namespace, self.name)
            found = len(leases(self.vault, self.role))
            self.samples.append((time.monotonic(), found, len(status_leases(s)), str(s.get("phase"))))

    def longest_mismatch(self) -> float:
        """The longest run of samples in which Vault and status disagreed, in seconds."""
        longest, since = 0.0, None
        for at, found, said, _ in self.samples:
            if found != said:
                since = at if since is None else since
                longest = max(longest, at - since + 0.5)
            else:
                since = None
        return longest

    def __enter__(self) -> LeaseCount:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.join(10)


@pytest.mark.timeout(600)
def test_short_leases_are_renewed_and_replaced_for_minutes_with_zero_failed_logins(
        custom: Any, core: Any, vault: hvac.Client, env: Env, info: StackInfo, tmp_path: Path,  # noqa: F811
        operators: list[Operator]) -> None:
    """Leases of TTL 10 s and max TTL 40 s, for more than three max TTLs, while a client logs in with
    what the Secret holds many times a second; the rotator's own Vault login tokens live 15 s (a lease
    tied to one would die with it). Then the policy is deleted: its leases are revoked."""
    rotator_ttl(vault, env, "15s")
    role = dynamic_role(vault, env, "short", "10s", "40s")
    dynamic_source(custom, vault, env, "db")
    start(operators, info, env, tmp_path, "rotor")
    wait_ready(custom, env.namespace, "db", timeout=60)
    renewals_before = audited(info, "sys/leases/renew")
    dynamic_policy(custom, env, "db", role)
    wait_rotations(custom, env.namespace, "db", 1)
    began = time.monotonic()
    with Reader(core, env.pg, env.namespace, "db-creds") as reader, \
            LeaseCount(custom, vault, env.namespace, "db", role) as counts:
        time.sleep(130)
    s = status(custom, env.namespace, "db")
    renewals = audited(info, "sys/leases/renew") - renewals_before
    mismatch = counts.longest_mismatch()
    print(f"\nshort leases ({time.monotonic() - began:.0f}s, TTL 10s, max 40s, login token 15s): "
          f"{reader.ok} logins, {len(reader.failed)} failed; {s['rotations']} leases issued, {renewals} renewals; "
          f"{len(counts.samples)} samples of Vault's lease count vs status, longest disagreement {mismatch:.1f}s")
    assert reader.failed == [], reader.failed[:5]
    assert reader.ok > 1000 and s["rotations"] >= 4
    assert renewals >= 2 * (s["rotations"] - 1)
    assert mismatch <= 2.0, [sample for sample in counts.samples if sample[1] != sample[2]][:10]
    s = wait_phase(custom, env.namespace, "db", "Complete")
    assert len(leases(vault, role)) == len(status_leases(s)) == 1

    custom.delete_namespaced_custom_object("rotor.dev", "v1alpha1", env.namespace, "rotationpolicies", "db")
    deleted = time.monotonic()
    wait_for(lambda: not leases(vault, role), timeout=30, what="every lease revoked")
    revoked = time.monotonic() - deleted

    def gone() -> bool:
        try:
            status(custom, env.namespace, "db")
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=30, what="the policy gone (finalizer released)")
    print(f"policy deleted: its leases revoked within {revoked:.1f}s")


@pytest.mark.timeout(300)
def test_a_crash_between_issuing_a_lease_and_recording_it_leaves_no_lease_behind(
        custom: Any, vault: hvac.Client, env: Env, info: StackInfo, tmp_path: Path,  # noqa: F811
        operators: list[Operator]) -> None:
    role = dynamic_role(vault, env, "crash", "1h", "24h")
    dynamic_source(custom, vault, env, "db")
    crashing = start(operators, info, env, tmp_path, "crashing", ROTOR_FAULT_KILL_AT="Publishing:issued")
    wait_ready(custom, env.namespace, "db", timeout=60)
    dynamic_policy(custom, env, "db", role)
    assert crashing.process.wait(90) == -9, crashing.tail()
    killed = time.monotonic()
    (unrecorded,) = leases(vault, role)
    start(operators, info, env, tmp_path, "survivor")
    s = wait_rotations(custom, env.namespace, "db", 1, timeout=90)
    wait_for(lambda: unrecorded not in leases(vault, role), timeout=60, what="the unrecorded lease gone")
    lived = time.monotonic() - killed
    print(f"\ncrash between issue and record: the unrecorded lease ended {lived:.0f}s after the crash (grace 30s); "
          f"the survivor completed the rotation with one lease")
    assert len(leases(vault, role)) == len(status_leases(s)) == 1
    assert lived < 45


@pytest.mark.timeout(600)
@pytest.mark.parametrize("skew", [600, -600], ids=["rotor-ahead-10m", "rotor-behind-10m"])
def test_rotor_clock_ten_minutes_off_changes_nothing(
        custom: Any, core: Any, api_client: Any, vault: hvac.Client, env: Env, info: StackInfo,  # noqa: F811
        tmp_path: Path, operators: list[Operator], skew: int) -> None:
    """ROTOR_CLOCK_SKEW_SECONDS moves the rotation engine's clock: static-role revocation (Vault's
    times), lease renewal (Vault's times) and rollout failures (the API server's times) still work."""
    blue, green = static_roles(vault, env)
    creds = vault.read(f"database/static-creds/{blue}")["data"]
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/db", {"username": creds["username"],
                                                "password": creds["password"]}, mount_point="secret")
    secret_source(custom, env.namespace, "db", source_spec(env))
    role = dynamic_role(vault, env, "skew", "10s", "40s")
    dynamic_source(custom, vault, env, "dyn")
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/gen", {"password": "old-value"}, mount_point="secret")
    secret_source(custom, env.namespace, "gen", {**source_spec(env), "target": {"name": "gen-creds"},
                                                 "vault": {"path": f"{env.namespace}/gen", "role": env.reader_role}})
    start(operators, info, env, tmp_path, "skewed", ROTOR_CLOCK_SKEW_SECONDS=str(skew))
    for name in ("db", "dyn", "gen"):
        wait_ready(custom, env.namespace, name, timeout=60)
    dynamic_policy(custom, env, "dyn", role)
    wait_rotations(custom, env.namespace, "dyn", 1)
    with Reader(core, env.pg, env.namespace, "dyn-creds") as reader:
        started = time.monotonic()
        # Static roles: the old password is reset, however the clocks compare.
        policy(custom, env.namespace, "db", {
            "secretSourceRef": {"name": "db"}, "strategy": "overlap", "schedule": {"interval": "720h"},
            "identity": {"serviceAccountName": "rotator", "role": env.rotator_role},
            "generator": {"type": "backend"}, "overlap": {"window": "2s", "staticRoles": [blue, green]},
            "verify": {"timeout": "30s"}, "deadline": "2m"})
        rotate_now(custom, env.namespace, "db")
        wait_rotations(custom, env.namespace, "db", 1)
        assert not can_login(env.pg, creds["username"], creds["password"]), "the old password still works"
        # A rollout failure from now rolls back at once.
        apps = kubernetes.client.AppsV1Api(api_client)
        consumer(apps, env.namespace, "gen", secret="gen-creds")
        policy(custom, env.namespace, "gen", {
            "secretSourceRef": {"name": "gen"}, "strategy": "versioned", "schedule": {"interval": "720h"},
            "identity": {"serviceAccountName": "rotator", "role": env.rotator_role},
            "overlap": {"window": "1s"}, "verify": {"timeout": "10m"}, "deadline": "1h"})
        rotate_now(custom, env.namespace, "gen")
        wait_phase(custom, env.namespace, "gen", "Verifying")
        deadline_exceeded(apps, env.namespace, "gen")
        failed_at = time.monotonic()
        wait_phase(custom, env.namespace, "gen", "RolledBack", timeout=60)
        noticed = time.monotonic() - failed_at
        time.sleep(max(0.0, 50 - (time.monotonic() - started)))  # past a max TTL of the dynamic lease
    s = status(custom, env.namespace, "dyn")
    lease = vault.sys.read_lease(f"database/creds/{role}/{leases(vault, role)[0]}")["data"]
    off = abs(_unix(s["active"]["leaseExpires"]) - _unix(lease["expire_time"]))
    print(f"\nRotor's clock {skew:+d}s: static old password reset; rollout failure rolled back in {noticed:.1f}s; "
          f"dynamic: {reader.ok} logins, {len(reader.failed)} failed over {s['rotations']} leases; status lease "
          f"expiry {off:.1f}s from Vault's")
    assert noticed < 10
    assert reader.failed == [] and reader.ok > 200 and s["rotations"] >= 2
    assert off <= 8  # on Vault's clock (a renewal may land between the two reads), not ten minutes off


def _unix(stamp: str) -> float:
    from rotor.planning import times

    return times.parse(stamp).timestamp()


@pytest.mark.timeout(300)
def test_a_manual_kv_put_during_pending_is_not_adopted(
        custom: Any, core: Any, vault: hvac.Client, env: Env, info: StackInfo, tmp_path: Path,  # noqa: F811
        operators: list[Operator]) -> None:
    """The operator dies with the rotation in Pending; a person writes the secret by hand; the restarted
    operator writes a new value on top, marked as its own (a version one ahead is no longer taken for
    Rotor's)."""
    path = f"{env.namespace}/db"
    vault.secrets.kv.v2.create_or_update_secret(path, {"password": "first"}, mount_point="secret")
    secret_source(custom, env.namespace, "db", source_spec(env))
    crashing = start(operators, info, env, tmp_path, "crashing", ROTOR_FAULT_KILL_AT="Pending:after")
    wait_ready(custom, env.namespace, "db", timeout=60)
    policy(custom, env.namespace, "db", {
        "secretSourceRef": {"name": "db"}, "strategy": "overlap", "schedule": {"interval": "720h"},
        "identity": {"serviceAccountName": "rotator", "role": env.rotator_role}, "overlap": {"window": "1s"}})
    rotate_now(custom, env.namespace, "db")
    assert crashing.process.wait(90) == -9, crashing.tail()
    assert status(custom, env.namespace, "db")["phase"] == "Pending"
    manual = vault.secrets.kv.v2.create_or_update_secret(path, {"password": "typed-by-hand"}, mount_point="secret")
    manual_version = manual["data"]["version"]
    start(operators, info, env, tmp_path, "survivor")
    s = wait_rotations(custom, env.namespace, "db", 1, timeout=90)
    meta = vault.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")["data"]
    value = secret_data(core, env.namespace, "db-creds") or {}
    print(f"\nmanual kv put (version {manual_version}) during Pending: not adopted; Rotor wrote version "
          f"{meta['current_version']} on top, marked with rotation {s['rotation']['id']}")
    assert s["active"]["version"] == str(manual_version + 1) == str(meta["current_version"])
    assert meta["custom_metadata"].get(f"rotor-rotation-{manual_version + 1}") == s["rotation"]["id"]
    assert f"rotor-rotation-{manual_version}" not in (meta["custom_metadata"] or {})
    assert value["password"] not in (b"typed-by-hand", b"first") and len(value["password"]) == 32


@pytest.mark.timeout(300)
def test_two_active_replicas_rotate_exactly_once(
        custom: Any, core: Any, vault: hvac.Client, env: Env, info: StackInfo, tmp_path: Path,  # noqa: F811
        operators: list[Operator]) -> None:
    """Two operators, both active on one namespace (no peering: what an event-loop stall past the peering
    lifetime amounts to), rotate a generated value, a static-role pair and a dynamic lease three times
    each: every rotation happens once."""
    blue, green = static_roles(vault, env)
    creds = vault.read(f"database/static-creds/{blue}")["data"]
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/db", {"username": creds["username"],
                                                "password": creds["password"]}, mount_point="secret")
    secret_source(custom, env.namespace, "db", source_spec(env))
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/gen", {"password": "v1"}, mount_point="secret")
    secret_source(custom, env.namespace, "gen", {**source_spec(env), "target": {"name": "gen-creds"},
                                                 "vault": {"path": f"{env.namespace}/gen", "role": env.reader_role}})
    role = dynamic_role(vault, env, "twice", "1h", "24h")
    dynamic_source(custom, vault, env, "dyn")
    replicas = [start(operators, info, env, tmp_path, name) for name in ("a", "b")]
    for name in ("db", "gen", "dyn"):
        wait_ready(custom, env.namespace, name, timeout=60)
    common = {"schedule": {"interval": "720h"}, "verify": {"timeout": "30s"}, "deadline": "5m",
              "identity": {"serviceAccountName": "rotator", "role": env.rotator_role}}
    policy(custom, env.namespace, "db", {"secretSourceRef": {"name": "db"}, "strategy": "overlap", **common,
                                         "generator": {"type": "backend"},
                                         "overlap": {"window": "1s", "staticRoles": [blue, green]}})
    policy(custom, env.namespace, "gen", {"secretSourceRef": {"name": "gen"}, "strategy": "overlap", **common,
                                          "overlap": {"window": "1s"}})
    dynamic_policy(custom, env, "dyn", role, overlap={"window": "1s"})
    wait_rotations(custom, env.namespace, "dyn", 1)  # its first lease, issued at once
    for n in range(1, 4):
        for name in ("db", "gen", "dyn"):
            rotate_now(custom, env.namespace, name)
        for name, count in (("db", n), ("gen", n), ("dyn", n + 1)):
            wait_rotations(custom, env.namespace, name, count, timeout=90)
    gen = vault.secrets.kv.v2.read_secret_metadata(f"{env.namespace}/gen", mount_point="secret")["data"]
    static = {r: audited(info, f"database/rotate-role/{r}") for r in (blue, green)}
    issued = audited(info, f"database/creds/{role}")
    conflicts = sum(r.count("status moved on") for r in replicas)
    claims = sum(r.count("carrying it on") for r in replicas)
    print(f"\ntwo active replicas, 3 rotations each: KV versions {gen['current_version']} (1 + 3), static "
          f"rotations {static} (3 + 3), leases issued {issued} (1 + 3); {conflicts} lost status writes re-read, "
          f"{claims} takeovers")
    assert gen["current_version"] == 4
    assert static == {blue: 3, green: 3}
    assert issued == 4 and len(leases(vault, role)) == 1
    for name in ("db", "gen", "dyn"):
        steps = [step["phase"] for step in status(custom, env.namespace, name)["rotation"]["steps"]]
        assert steps.count("Publishing") == 1 and steps.count("Complete") == 1, (name, steps)


@pytest.mark.timeout(300)
def test_a_policy_deleted_while_rotor_is_down_has_its_leases_revoked_when_it_is_back(
        custom: Any, vault: hvac.Client, env: Env, info: StackInfo, tmp_path: Path,  # noqa: F811
        operators: list[Operator]) -> None:
    role = dynamic_role(vault, env, "down", "1h", "24h")
    dynamic_source(custom, vault, env, "db")
    first = start(operators, info, env, tmp_path, "first")
    wait_ready(custom, env.namespace, "db", timeout=60)
    dynamic_policy(custom, env, "db", role)
    wait_rotations(custom, env.namespace, "db", 1)
    first.process.kill()
    first.process.wait(30)
    custom.delete_namespaced_custom_object("rotor.dev", "v1alpha1", env.namespace, "rotationpolicies", "db")
    assert len(leases(vault, role)) == 1  # held by Rotor's finalizer until Rotor is back
    start(operators, info, env, tmp_path, "back")
    back = time.monotonic()

    def gone() -> bool:
        try:
            status(custom, env.namespace, "db")
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=60, what="the policy released")
    print(f"\npolicy deleted while Rotor was down: released {time.monotonic() - back:.1f}s after the restart, "
          f"{len(leases(vault, role))} lease(s) left")
    assert leases(vault, role) == []
