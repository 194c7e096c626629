"""Crash safety of a Secrets Manager rotation: SIGKILL the operator (a separate `rotor run` process,
ROTOR_FAULT_KILL_AT as in tests/integration/test_rotation_crash.py), above all between staging AWSPENDING
and recording it (Publishing:staged), and while the Secret is pinned to the pending version (Propagating:after:
the restarted operator pins it again from the policy's status); it completes the rotation once, writing one
version."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.devenv import StackInfo
from tests.devenv.process import free_port

from ..conftest import secret_source, wait_for, wait_ready
from ..test_rotation import rotate_now, status, wait_rotations
from ..test_rotation_crash import has_synced
from .conftest import AwsTenant, aws_connection
from .rotation import aws_policy, current, labels, rotator
from .test_aws_sync import aws_spec, unique
from .testbed import MotoTestbed

KILL_POINTS = ["Publishing:staged", "Publishing:after", "Propagating:after", "Revoking:after"]


def start_operator(info: StackInfo, moto: MotoTestbed, namespace: str, kill_at: str | None,
                   metrics_port: int = 0) -> subprocess.Popen[bytes]:
    environ = {**os.environ, "KUBECONFIG": info.kubeconfig, "ROTOR_METRICS_PORT": str(metrics_port),
               "ROTOR_LOG_LEVEL": "info", "ROTOR_MIN_REFRESH_SECONDS": "1",
               "ROTOR_VAULT_CONNECTIONS": json.dumps({"default": {"address": info.vault_addr}}),
               "ROTOR_AWS_CONNECTIONS": json.dumps({"default": aws_connection(moto).model_dump(mode="json")})}
    environ.pop("ROTOR_FAULT_KILL_AT", None)
    if kill_at:
        environ["ROTOR_FAULT_KILL_AT"] = kill_at
    return subprocess.Popen([sys.executable, "-m", "rotor", "run", "--namespace", namespace], env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.timeout(900)
@pytest.mark.usefixtures("operator_aside")  # the session's operator would finish the rotations itself
def test_sigkill_between_pending_and_current_completes_each_rotation_once(
        moto_server: MotoTestbed, tenant: AwsTenant, core: Any, custom: Any, info: StackInfo) -> None:
    ns = tenant.namespace
    secret_id = unique(f"{ns}/db")
    moto_server.admin("secretsmanager").create_secret(Name=secret_id, SecretString=json.dumps({"password": "v0"}))
    role = rotator(core, moto_server, tenant)
    secret_source(custom, ns, "db", {**aws_spec(tenant, secretsManager={"secretId": secret_id}),
                                     "target": {"name": "db-creds"}, "refresh": {"interval": "1h"}})
    aws_policy(custom, ns, "db", role, {"strategy": "overlap", "overlap": {"window": "2s"}})
    for n, point in enumerate(KILL_POINTS, start=1):
        before = labels(moto_server, secret_id)
        old = current(moto_server, secret_id)["VersionId"]
        port = free_port()
        crashing = start_operator(info, moto_server, ns, point, metrics_port=port)
        try:
            wait_for(functools.partial(has_synced, port), 60, what=f"the operator set to crash at {point} up")
            wait_ready(custom, ns, "db")
            rotate_now(custom, ns, "db")
            assert crashing.wait(90) == -9, f"the operator was not killed at {point}"
        finally:
            if crashing.poll() is None:
                crashing.kill()
        at_crash, phase_at_crash = labels(moto_server, secret_id), status(custom, ns, "db").get("phase")
        if point == "Publishing:staged":  # the moment in question: staged, not yet current
            [pending] = [v for v in at_crash if v not in before]
            assert "AWSPENDING" in at_crash[pending] and "AWSCURRENT" in at_crash[old], at_crash
        if point == "Propagating:after":  # readers are moving to the pending version; AWSCURRENT has not
            assert "AWSCURRENT" in at_crash[old], at_crash
        survivor = start_operator(info, moto_server, ns, None)
        try:
            s = wait_rotations(custom, ns, "db", n, timeout=90)
        finally:
            survivor.terminate()
            survivor.wait(30)
        steps = [step["phase"] for step in s["rotation"]["steps"]]
        assert steps.count("Complete") == 1 and steps.count("Revoking") == 1, (point, steps)
        after = labels(moto_server, secret_id)
        [new] = [v for v in after if v not in before]  # exactly one version written
        assert new == s["rotation"]["new"]["version"] and "AWSCURRENT" in after[new], (point, after)
        assert [v for v, stages in after.items() if stages] == [new], (point, after)  # the old one retired
        print(f"\naws crash at {point} (phase then {phase_at_crash}): completed once, "
              f"1 version written, old retired")
