"""Crash safety of a Transit key rotation (strategy transit, exported into the Secret): one rotation,
the operator SIGKILLed at every phase and inside the two Vault writes, each operator resuming what the
last one left (the harness of test_rotation_crash.py). The key gets exactly one new version, its
minimums are raised once, and the KV secret gets exactly the two versions a rotation writes.
"""

from __future__ import annotations

import time
from typing import Any

import hvac
import pytest

from tests.devenv import StackInfo
from tests.integration.transit_setup import MOUNT, create_key

from .conftest import wait_for
from .test_rotation import policy, rotate_now
from .test_rotation_crash import PHASES, crash_through, finish, served, start_crashing
from .test_transit import delivered, exported, transit_env, transit_policy_spec

# Inside Publishing also just after Vault made the new key version, before its material was delivered
# (the KV write); inside Revoking just after the minimums were raised, before the KV version holding
# only the new key version was written and the older ones destroyed.
TRANSIT_KILL_POINTS = ["Pending:after", "Publishing:before", "Publishing:rotated", "Publishing:after",
                       "Propagating:before", "Verifying:before", "Overlapping:after", "Revoking:before",
                       "Revoking:raised", "Revoking:after"]


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("operator_aside")
def test_sigkill_at_every_phase_of_one_key_rotation_makes_one_key_version(
        custom: Any, core: Any, vault: hvac.Client, namespace: str, info: StackInfo) -> None:
    started = time.monotonic()
    first, _ = start_crashing(info, namespace, TRANSIT_KILL_POINTS[0])
    key, rotator = transit_env(core, vault, namespace, custom, kv_writes=True)  # Ready through FIRST
    create_key(vault, key, "ed25519", exportable=True)
    policy(custom, namespace, "orders", {**transit_policy_spec(key, rotator, window="1s"), "deadline": "5m",
                                         "verify": {"timeout": "30s"},
                                         "transit": {"key": key, "export": {"type": "signing-key"}}})
    rotate_now(custom, namespace, "orders")
    crash_through(custom, info, namespace, "orders", TRANSIT_KILL_POINTS, first, started)
    s = finish(custom, info, namespace, "orders")

    assert [step["phase"] for step in s["rotation"]["steps"]] == PHASES, s["rotation"]["steps"]
    config = vault.secrets.transit.read_key(key, mount_point=MOUNT)["data"]
    assert (config["latest_version"], config["min_decryption_version"], config["min_encryption_version"]) == (2, 2, 2)
    assert served(info, f"{MOUNT}/keys/{key}/rotate") == 1, "the key was rotated more than once"
    assert served(info, f"{MOUNT}/keys/{key}/config") == 1, "the minimums were raised more than once"
    # KV: 1 the administrator's, 2 the old and new key versions (Publishing), 3 the new one only (Revoking)
    versions = vault.secrets.kv.v2.read_secret_metadata(f"{namespace}/orders", mount_point="secret")["data"]
    alive = [v for v, meta in versions["versions"].items() if not meta["destroyed"]]
    assert (versions["current_version"], alive) == (3, ["3"]), versions["versions"]
    second = exported(vault, key, 2)
    wait_for(lambda: "key-v1" not in delivered(core, namespace), 30, what="version 1 gone from the Secret")
    assert delivered(core, namespace) == {"transitKey": key, "key-v2": second, "key-vlatest": "2"}
    print(f"rotated once through {len(TRANSIT_KILL_POINTS)} crashes: key version 2, 1 rotate, 1 raise, "
          f"KV version 3 ({time.monotonic() - started:.0f}s)")
