"""Crash safety: SIGKILL the operator at every rotation phase; the restarted operator finishes the
rotation exactly once, with no orphaned lease or database role and no double revoke.

The kill is real (SIGKILL of a separate `rotor run` process). Where it happens is chosen with
ROTOR_FAULT_KILL_AT=<phase>:<before|after>, which makes the operator kill itself right after the
phase was persisted (before its action) or right after the action (before the next phase is
persisted): the two moments a crash can leave work half done.
"""

from __future__ import annotations

import calendar
import functools
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

import hvac
import pytest
from cryptography import x509

from tests.devenv import StackInfo
from tests.devenv.process import free_port
from tests.integration.pki_setup import MOUNT

from .conftest import secret_source, wait_for, wait_ready
from .test_certificates import pki_env
from .test_certificates import source as certificate_source
from .test_rotation import (
    Env,
    dynamic_pg_roles,
    dynamic_role,
    env,  # noqa: F401 - the shared rotation fixture
    leases,
    policy,
    rotate_now,
    source_spec,
    status,
    wait_rotations,
)

# Every phase, at the moment its work is most likely half done.
KILL_POINTS = ["Publishing:before", "Publishing:after", "Propagating:before", "Verifying:before",
               "Overlapping:after", "Revoking:before", "Revoking:after"]


def start_operator(info: StackInfo, namespace: str, kill_at: str | None,
                   metrics_port: int = 0) -> subprocess.Popen[bytes]:
    """`rotor run` watching only NAMESPACE: its start-up lists nothing the rest of the suite made."""
    environ = {**os.environ, "KUBECONFIG": info.kubeconfig, "ROTOR_METRICS_PORT": str(metrics_port),
               "ROTOR_LOG_LEVEL": "info", "ROTOR_MIN_REFRESH_SECONDS": "1",
               "ROTOR_VAULT_CONNECTIONS": json.dumps({"default": {"address": info.vault_addr}})}
    environ.pop("ROTOR_FAULT_KILL_AT", None)
    if kill_at:
        environ["ROTOR_FAULT_KILL_AT"] = kill_at
    return subprocess.Popen([sys.executable, "-m", "rotor", "run", "--namespace", namespace], env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(operator: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not exited within a pod's default grace period (as the kubelet
    would); said in the output, since it costs the suite that long."""
    operator.terminate()
    try:
        operator.wait(30)
    except subprocess.TimeoutExpired:
        print("\n`rotor run` did not exit within 30s of SIGTERM: killed")
        operator.kill()
        operator.wait(10)


def has_synced(metrics_port: int) -> bool:
    """Whether the operator serving /metrics on METRICS_PORT has synced a SecretSource (so it knows the
    test's source, and a rotation asked for now starts at once)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return False  # not serving yet
    return any(line.startswith("rotor_sync_total{") and float(line.split()[-1]) > 0 for line in text.splitlines())


def next_second(after: float) -> None:
    """Wait until the clock is in a whole second later than AFTER (the audit log has whole seconds)."""
    time.sleep(max(0.0, math.floor(after) + 1 - time.time()))


def served(info: StackInfo, path: str, since: float = 0.0) -> int:
    """Requests to PATH Vault answered since SINCE (its file audit device keeps paths in the clear, ids
    and values HMAC'd)."""
    count = 0
    with open(info.vault_audit_log) as log:
        for line in log:
            entry = json.loads(line)
            if entry.get("type") == "response" and entry.get("request", {}).get("path") == path:
                when = calendar.timegm(time.strptime(entry["time"][:19], "%Y-%m-%dT%H:%M:%S"))
                if when >= int(since):
                    count += 1
    return count


def revokes(info: StackInfo, since: float) -> int:
    """Lease revocations Vault served since SINCE."""
    return served(info, "sys/leases/revoke", since)


@pytest.mark.timeout(1200)
@pytest.mark.usefixtures("operator_aside")  # the session's operator would finish the rotations itself
def test_sigkill_at_every_phase_completes_each_rotation_once(
        custom: Any, core: Any, vault: hvac.Client, env: Env, info: StackInfo) -> None:  # noqa: F811 - the fixture
    role = dynamic_role(vault, env)
    vault.secrets.kv.v2.create_or_update_secret(f"{env.namespace}/db", {"host": "127.0.0.1"}, mount_point="secret")
    secret_source(custom, env.namespace, "db", source_spec(env))
    operator = start_operator(info, env.namespace, None)
    try:
        wait_ready(custom, env.namespace, "db", timeout=60)
        policy(custom, env.namespace, "db", {
            "secretSourceRef": {"name": "db"}, "strategy": "dynamic", "schedule": {"interval": "720h"},
            "identity": {"serviceAccountName": "rotator", "role": env.rotator_role},
            "dynamic": {"role": role}, "overlap": {"window": "2s"}, "verify": {"timeout": "30s"}, "deadline": "5m"})
        wait_rotations(custom, env.namespace, "db", 1)  # the first lease
    finally:
        stop(operator)
    done = time.time()
    roles_before = dynamic_pg_roles(info) - 1
    for n, point in enumerate(KILL_POINTS, start=2):
        next_second(done)  # keep the previous rotation's revoke out of this one's count
        since = time.time()
        port = free_port()
        crashing = start_operator(info, env.namespace, point, metrics_port=port)
        try:
            wait_for(functools.partial(has_synced, port), 60, what=f"the operator set to crash at {point} up")
            rotate_now(custom, env.namespace, "db")
            assert crashing.wait(90) == -9, f"the operator was not killed at {point}"
        finally:
            if crashing.poll() is None:
                crashing.kill()
        phase_at_crash = status(custom, env.namespace, "db").get("phase")
        survivor = start_operator(info, env.namespace, None)
        try:
            s = wait_rotations(custom, env.namespace, "db", n, timeout=90)
            done = time.time()
        finally:
            stop(survivor)
        steps = [step["phase"] for step in s["rotation"]["steps"]]
        assert steps.count("Complete") == 1 and steps.count("Revoking") == 1, (point, steps)
        assert len(leases(vault, role)) == 1, f"orphaned or missing lease after a crash at {point}"
        assert dynamic_pg_roles(info) - roles_before == 1, f"orphaned database role after a crash at {point}"
        assert revokes(info, since) == 1, f"old lease revoked {revokes(info, since)} times after a crash at {point}"
        print(f"\ncrash at {point} (phase then {phase_at_crash}): completed once, 1 lease, 1 revoke")
    wait_for(lambda: status(custom, env.namespace, "db").get("rotations") == len(KILL_POINTS) + 1)


# One rotation killed at every phase, each operator resuming what the last one left (it takes the
# rotation over once the status stood still for the takeover time, planning.rotation.TAKEOVER): the
# phase persisted with nothing done yet ("before"), or its action done and not yet recorded ("after"),
# plus each strategy's moments inside an action. Pending has no action: its one point is the rotation's
# id recorded, nothing published. Overlapping:after is the window over, Revoking not yet entered.
PHASES = ["Pending", "Publishing", "Propagating", "Verifying", "Overlapping", "Revoking", "Complete"]


def start_crashing(info: StackInfo, namespace: str, kill_at: str) -> tuple[subprocess.Popen[bytes], int]:
    """An operator set to SIGKILL itself at KILL_AT, and the port of its /metrics (to know it is up)."""
    port = free_port()
    return start_operator(info, namespace, kill_at, metrics_port=port), port


def crash_through(custom: Any, info: StackInfo, namespace: str, name: str, points: list[str],
                  first: subprocess.Popen[bytes], started: float) -> None:
    """Policy NAME's rotation in progress, the operator killed at each of POINTS in turn: FIRST is up, set
    to crash at POINTS[0] and asked to rotate; each later one starts set to crash at the next point. The
    phase each kill left recorded must be the point's (so no point was passed over)."""
    for n, point in enumerate(points):
        crashing = first if n == 0 else start_operator(info, namespace, point)
        try:
            assert crashing.wait(60) == -9, f"the operator was not killed at {point}"
        finally:
            if crashing.poll() is None:
                crashing.kill()
        phase = status(custom, namespace, name).get("phase")
        print(f"\nkilled at {point}: phase {phase} ({time.monotonic() - started:.0f}s)")
        assert phase == point.split(":")[0], f"killed at {point} with phase {phase} recorded"


def finish(custom: Any, info: StackInfo, namespace: str, name: str) -> dict[str, Any]:
    """The status once an operator that crashes nowhere completed the rotation."""
    survivor = start_operator(info, namespace, None)
    try:
        return wait_rotations(custom, namespace, name, 1, timeout=60)
    finally:
        stop(survivor)


# A certificate renewal (strategy certificate) through every phase; inside Publishing also just after
# the source was asked for the certificate, before it issued one. Publishing:after is the certificate
# issued and not yet recorded; Revoking:after the old serial revoked, Complete not recorded (the revoke
# is repeated: a no-op for Vault).
CERTIFICATE_KILL_POINTS = ["Pending:after", "Publishing:before", "Publishing:requested", "Publishing:after",
                           "Propagating:before", "Verifying:before", "Overlapping:after", "Revoking:before",
                           "Revoking:after"]


def has_ready_source(metrics_port: int) -> bool:
    """Whether the operator serving /metrics on METRICS_PORT counts a Ready SecretSource (a certificate
    source that is not due issues nothing, so no sync is counted)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return False
    return any(line.startswith('rotor_secretsources{ready="True"') and float(line.split()[-1]) > 0
               for line in text.splitlines())


def issued_for(vault: hvac.Client, common_name: str) -> dict[str, bool]:
    """Every certificate the PKI engine issued for COMMON_NAME: serial -> revoked."""
    found: dict[str, bool] = {}
    for serial in vault.list(f"{MOUNT}/certs")["data"]["keys"]:
        data = vault.read(f"{MOUNT}/cert/{serial}")["data"]
        leaf = x509.load_pem_x509_certificate(data["certificate"].encode())
        if leaf.subject.rfc4514_string() == f"CN={common_name}":
            found[serial] = bool(data.get("revocation_time"))
    return found


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("operator_aside")
def test_sigkill_at_every_phase_of_one_certificate_renewal_issues_and_revokes_once(
        custom: Any, core: Any, vault: hvac.Client, namespace: str, info: StackInfo) -> None:
    pki_role, login = pki_env(core, vault, namespace)
    secret_source(custom, namespace, "cert", certificate_source(namespace, login, pki_role, ttl="1h"))
    started = time.monotonic()
    name = f"api.{namespace}.test"
    policy(custom, namespace, "cert", {"secretSourceRef": {"name": "cert"}, "strategy": "certificate",
                                       "schedule": {"interval": "720h"}, "overlap": {"window": "1s"},
                                       "verify": {"timeout": "30s"}, "deadline": "5m"})
    first, port = start_crashing(info, namespace, CERTIFICATE_KILL_POINTS[0])  # it also issues the first one
    wait_for(functools.partial(has_ready_source, port), 60, what="the first operator up, its certificate issued")
    rotate_now(custom, namespace, "cert")
    crash_through(custom, info, namespace, "cert", CERTIFICATE_KILL_POINTS, first, started)
    s = finish(custom, info, namespace, "cert")
    assert [step["phase"] for step in s["rotation"]["steps"]] == PHASES, s["rotation"]["steps"]
    issued = issued_for(vault, name)
    assert len(issued) == 2, f"{len(issued)} certificates issued for the first one and one renewal"
    active = s["active"]["serial"]
    assert [serial for serial, revoked in issued.items() if not revoked] == [active], issued
    print(f"renewed once through {len(CERTIFICATE_KILL_POINTS)} crashes: {len(issued)} certificates, 1 revoked "
          f"({time.monotonic() - started:.0f}s)")
