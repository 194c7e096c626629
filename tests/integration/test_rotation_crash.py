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


def revokes(info: StackInfo, since: float) -> int:
    """Lease revocations Vault served since SINCE (its file audit device; ids are HMAC'd there)."""
    count = 0
    with open(info.vault_audit_log) as log:
        for line in log:
            entry = json.loads(line)
            if entry.get("type") == "response" and entry.get("request", {}).get("path") == "sys/leases/revoke":
                when = calendar.timegm(time.strptime(entry["time"][:19], "%Y-%m-%dT%H:%M:%S"))
                if when >= int(since):
                    count += 1
    return count


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
        operator.terminate()
        operator.wait(30)
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
            survivor.terminate()
            survivor.wait(30)
        steps = [step["phase"] for step in s["rotation"]["steps"]]
        assert steps.count("Complete") == 1 and steps.count("Revoking") == 1, (point, steps)
        assert len(leases(vault, role)) == 1, f"orphaned or missing lease after a crash at {point}"
        assert dynamic_pg_roles(info) - roles_before == 1, f"orphaned database role after a crash at {point}"
        assert revokes(info, since) == 1, f"old lease revoked {revokes(info, since)} times after a crash at {point}"
        print(f"\ncrash at {point} (phase then {phase_at_crash}): completed once, 1 lease, 1 revoke")
    wait_for(lambda: status(custom, env.namespace, "db").get("rotations") == len(KILL_POINTS) + 1)


# A certificate renewal (strategy certificate), crashed three times in one renewal, each operator
# resuming what the last one left: just after the source was asked for the certificate; just after the
# source issued it, before the policy recorded it; just after the old serial was revoked, before Complete
# was recorded (the revoke is repeated: a no-op for Vault). The phases between are the shared state
# machine, crashed above at every one.
CERTIFICATE_KILL_POINTS = ["Publishing:requested", "Publishing:after", "Revoking:after"]


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
def test_sigkill_three_times_in_a_certificate_renewal_issues_and_revokes_once(
        custom: Any, core: Any, vault: hvac.Client, namespace: str, info: StackInfo) -> None:
    pki_role, login = pki_env(core, vault, namespace)
    secret_source(custom, namespace, "cert", certificate_source(namespace, login, pki_role, ttl="1h"))
    started = time.monotonic()
    name = f"api.{namespace}.test"
    policy(custom, namespace, "cert", {"secretSourceRef": {"name": "cert"}, "strategy": "certificate",
                                       "schedule": {"interval": "720h"}, "overlap": {"window": "1s"},
                                       "verify": {"timeout": "30s"}, "deadline": "5m"})
    for n, point in enumerate(CERTIFICATE_KILL_POINTS):  # the first operator also issues the first certificate
        port = free_port()
        crashing = start_operator(info, namespace, point, metrics_port=port)
        try:
            if n == 0:
                wait_for(functools.partial(has_ready_source, port), 60, what=f"the operator set to crash at {point}")
                rotate_now(custom, namespace, "cert")
            assert crashing.wait(60) == -9, f"the operator was not killed at {point}"
        finally:
            if crashing.poll() is None:
                crashing.kill()
        print(f"\nkilled at {point}: phase {status(custom, namespace, 'cert').get('phase')}, "
              f"{len(issued_for(vault, name))} certificates issued")
    survivor = start_operator(info, namespace, None)
    try:
        s = wait_rotations(custom, namespace, "cert", 1, timeout=60)
    finally:
        survivor.terminate()
        survivor.wait(30)
    steps = [step["phase"] for step in s["rotation"]["steps"]]
    assert steps.count("Complete") == 1 and steps.count("Publishing") == 1, steps
    issued = issued_for(vault, name)
    assert len(issued) == 2, f"{len(issued)} certificates issued for the first one and one renewal"
    active = s["active"]["serial"]
    assert [serial for serial, revoked in issued.items() if not revoked] == [active], issued
    print(f"renewed once through {len(CERTIFICATE_KILL_POINTS)} crashes: {len(issued)} certificates, 1 revoked "
          f"({time.monotonic() - started:.0f}s)")
