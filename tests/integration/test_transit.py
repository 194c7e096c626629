"""strategy transit against the real Vault Transit engine: a signature made with the old key version
verifies during the overlap and fails once the minimum is raised; data encrypted before the rotation
decrypts during the overlap; status shows versions, never key material.

Readers here are the test itself, signing and encrypting through Vault as the administrator (an app
would with its own token): the key is used in place, so there is no Secret to wait for.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import hvac
import hvac.exceptions
import kubernetes
import pytest

from tests.devenv import Stack
from tests.integration.transit_setup import MOUNT, create_key, enable_transit, transit_policy

from .conftest import secret_data, secret_source, vault_role, wait_for, wait_ready
from .test_incident import get, incident, pod_spec
from .test_incident import wait_phase as incident_phase
from .test_rotation import policy, rotate_now, rotator_policy, status, wait_phase, wait_rotations

pytestmark = pytest.mark.usefixtures("operator")
MESSAGE = base64.b64encode(b"order 42: ship it").decode()


def transit_env(core: Any, vault: hvac.Client, namespace: str, custom: Any, *,
                kv_writes: bool = False) -> tuple[str, str]:
    """A SecretSource naming the Vault identity of the policy's namespace (the key's name, as readers
    find it), a rotator allowed on NAMESPACE-* keys (KV_WRITES: and on the namespace's KV secrets, where
    an exported key is delivered); (key, rotator role)."""
    enable_transit(vault)
    for account in ("app", "rotator"):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    key = f"{namespace}-orders"
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/orders", {"transitKey": key}, mount_point="secret")
    reader = vault_role(vault, namespace)
    rotator = f"{namespace}-rotator"
    rules = transit_policy(namespace) + ("\n" + rotator_policy(namespace) if kv_writes else "")
    vault.sys.create_or_update_policy(name=rotator, policy=rules)
    vault.write(f"auth/kubernetes/role/{rotator}", bound_service_account_names=["rotator"],
                bound_service_account_namespaces=[namespace], policies=[rotator], audience="vault", ttl="1h")
    secret_source(custom, namespace, "orders", {"provider": "vault", "serviceAccountName": "app",
                                                "vault": {"path": f"{namespace}/orders", "role": reader},
                                                "target": {"name": "orders"}, "refresh": {"interval": "1h"}})
    wait_ready(custom, namespace, "orders")
    return key, rotator


def transit_policy_spec(key: str, rotator: str, window: str = "8s") -> dict[str, Any]:
    return {"secretSourceRef": {"name": "orders"}, "strategy": "transit", "transit": {"key": key},
            "schedule": {"interval": "720h"}, "overlap": {"window": window},
            "identity": {"serviceAccountName": "rotator", "role": rotator}}


def verifies(vault: hvac.Client, key: str, signature: str) -> bool:
    try:
        answer = vault.secrets.transit.verify_signed_data(key, MESSAGE, signature=signature, mount_point=MOUNT)
    except hvac.exceptions.InvalidRequest:  # Vault: "... less than the minimum decryption key version"
        return False
    return bool(answer["data"]["valid"])


def decrypts(vault: hvac.Client, key: str, ciphertext: str) -> bool:
    try:
        answer = vault.secrets.transit.decrypt_data(key, ciphertext, mount_point=MOUNT)
    except hvac.exceptions.InvalidRequest:  # Vault: "ciphertext or signature version is disallowed by policy"
        return False
    return bool(answer["data"]["plaintext"] == MESSAGE)


def test_old_signatures_and_ciphertexts_work_through_the_overlap_and_stop_after(
        custom: Any, core: Any, vault: hvac.Client, namespace: str) -> None:
    key, rotator = transit_env(core, vault, namespace, custom)
    create_key(vault, key, "rsa-2048")  # signs and encrypts
    signature = vault.secrets.transit.sign_data(key, MESSAGE, mount_point=MOUNT)["data"]["signature"]
    ciphertext = vault.secrets.transit.encrypt_data(key, MESSAGE, mount_point=MOUNT)["data"]["ciphertext"]
    assert signature.startswith("vault:v1:") and ciphertext.startswith("vault:v1:")
    policy(custom, namespace, "orders", transit_policy_spec(key, rotator))
    rotate_now(custom, namespace, "orders")

    overlapping = wait_phase(custom, namespace, "orders", "Overlapping", timeout=30)
    assert overlapping["rotation"]["new"]["keyVersion"] == "2"
    fresh = vault.secrets.transit.sign_data(key, MESSAGE, mount_point=MOUNT)["data"]["signature"]
    assert fresh.startswith("vault:v2:")  # new signatures use the new version at once
    assert verifies(vault, key, signature) and decrypts(vault, key, ciphertext)  # the old one still works

    done = wait_rotations(custom, namespace, "orders", 1, timeout=60)
    assert not verifies(vault, key, signature) and not decrypts(vault, key, ciphertext)
    assert verifies(vault, key, fresh)
    config = vault.secrets.transit.read_key(key, mount_point=MOUNT)["data"]
    assert (config["latest_version"], config["min_decryption_version"], config["min_encryption_version"]) == (2, 2, 2)
    created = done["active"].pop("keyVersionCreated")
    assert done["active"] == {"key": f"{MOUNT}/{key}", "keyVersion": "2", "minDecryptionVersion": "2",
                              "minEncryptionVersion": "2"}
    assert created == config["keys"]["2"]["creation_time"][:19] + "Z"  # Vault's clock, whole seconds
    public_keys = [v["public_key"] for v in config["keys"].values()]
    shown = json.dumps(status(custom, namespace, "orders"))
    assert "PUBLIC KEY" not in shown and not any(k.splitlines()[1] in shown for k in public_keys)


def test_an_unknown_key_gets_ready_false_naming_the_field_and_rotates_nothing(
        custom: Any, core: Any, vault: hvac.Client, namespace: str) -> None:
    key, rotator = transit_env(core, vault, namespace, custom)
    policy(custom, namespace, "orders", transit_policy_spec(f"{key}-missing", rotator))
    rotate_now(custom, namespace, "orders")
    condition = wait_for(lambda: next((c for c in status(custom, namespace, "orders").get("conditions") or []
                                       if c["type"] == "Ready" and c["reason"] == "NotFound"), None),
                         30, what="Ready=False NotFound")
    assert condition["status"] == "False" and "spec.transit.key" in condition["message"]
    assert status(custom, namespace, "orders").get("phase") is None


def exported(vault: hvac.Client, key: str, version: int) -> str:
    """Version VERSION of KEY's signing key, as the administrator exports it."""
    return str(vault.read(f"{MOUNT}/export/signing-key/{key}/{version}")["data"]["keys"][str(version)])


def delivered(core: Any, namespace: str) -> dict[str, str]:
    return {k: v.decode() for k, v in (secret_data(core, namespace, "orders") or {}).items()}


def test_an_exported_key_reaches_the_secret_with_overlap_and_the_old_version_leaves_after(
        custom: Any, core: Any, vault: hvac.Client, namespace: str) -> None:
    key, rotator = transit_env(core, vault, namespace, custom, kv_writes=True)
    create_key(vault, key, "ed25519", exportable=True)
    policy(custom, namespace, "orders", {**transit_policy_spec(key, rotator),
                                         "transit": {"key": key, "export": {"type": "signing-key"}}})
    rotate_now(custom, namespace, "orders")

    overlapping = wait_phase(custom, namespace, "orders", "Overlapping", timeout=30)
    first, second = exported(vault, key, 1), exported(vault, key, 2)
    assert delivered(core, namespace) == {"transitKey": key, "key-v1": first, "key-v2": second, "key-vlatest": "2"}
    assert overlapping["rotation"]["new"]["deliveredVersions"] == "1,2"
    config = vault.secrets.transit.read_key(key, mount_point=MOUNT)["data"]
    assert (config["latest_version"], config["min_decryption_version"]) == (2, 1)  # nothing retired yet

    wait_rotations(custom, namespace, "orders", 1, timeout=60)
    wait_for(lambda: "key-v1" not in delivered(core, namespace), 30, what="version 1 gone from the Secret")
    assert delivered(core, namespace) == {"transitKey": key, "key-v2": second, "key-vlatest": "2"}
    config = vault.secrets.transit.read_key(key, mount_point=MOUNT)["data"]
    assert (config["min_decryption_version"], config["min_encryption_version"]) == (2, 2)
    versions = vault.secrets.kv.v2.read_secret_metadata(f"{namespace}/orders", mount_point="secret")["data"]
    alive = [v for v, meta in versions["versions"].items() if not meta["destroyed"]]
    assert alive == [str(versions["current_version"])]  # the KV versions holding version 1 are destroyed
    shown = json.dumps(status(custom, namespace, "orders"))
    assert first not in shown and second not in shown


def sign_as_app(stack: Stack, vault: hvac.Client, namespace: str, key: str) -> str:
    """A signature made with KEY by NAMESPACE/app through its own Vault login (what an app does)."""
    role = f"{namespace}-signer"
    vault.sys.create_or_update_policy(name=role, policy=f'path "{MOUNT}/sign/{key}" {{ capabilities = ["update"] }}\n'
                                      f'path "{MOUNT}/sign/{key}/*" {{ capabilities = ["update"] }}')
    vault.write(f"auth/kubernetes/role/{role}", bound_service_account_names=["app"],
                bound_service_account_namespaces=[namespace], policies=[role], audience="vault", ttl="1h")
    client = hvac.Client(url=vault.url)
    client.auth.kubernetes.login(role=role, jwt=stack.service_account_token(namespace, "app", "vault", 600))
    return str(client.secrets.transit.sign_data(key, MESSAGE, mount_point=MOUNT)["data"]["signature"])


def test_a_leaked_key_is_rotated_and_its_minimum_raised_at_once(
        stack: Stack, custom: Any, core: Any, vault: hvac.Client, namespace: str) -> None:
    key, rotator = transit_env(core, vault, namespace, custom, kv_writes=True)
    create_key(vault, key, "ecdsa-p256")
    signature = vault.secrets.transit.sign_data(key, MESSAGE, mount_point=MOUNT)["data"]["signature"]
    sign_as_app(stack, vault, namespace, key)
    policy(custom, namespace, "orders", transit_policy_spec(key, rotator, window="1h"))  # a leak skips the overlap
    incident(custom, namespace, "key-leak", {  # the key's policy's identity acts: none is named here
        "secretSourceRef": {"name": "orders"}, "exposure": {"where": "git", "reference": "commit 1234"}})

    revoked = incident_phase(custom, namespace, "key-leak", "Prevented", timeout=60)
    assert revoked["exposedVersion"] == "1" and revoked["revocation"]["confirmed"] is True
    assert not verifies(vault, key, signature)  # refused at once, no overlap
    config = vault.secrets.transit.read_key(key, mount_point=MOUNT)["data"]
    assert (config["latest_version"], config["min_decryption_version"], config["min_encryption_version"]) == (2, 2, 2)
    assert "rotation" not in get(custom, namespace, "leakincidents", "key-leak")["status"]  # no policy rotation
    # What a responder reads: the key reaches no workload (used in place); who used it, as whom, which version.
    timeline = {e["action"]: e["message"] for e in revoked["timeline"]}
    assert f"Transit key {MOUNT}/{key} version 1 used in place" in timeline["Identified"]
    assert revoked["blastRadius"]["consumers"] == [] and revoked["blastRadius"]["rotationPolicy"] == "orders"
    used = {(r["operation"], r.get("serviceAccount") or r["displayName"], r.get("keyVersion"))
            for r in revoked["auditReads"]}
    assert {("sign", f"{namespace}/app", 1), ("sign", "root", 1)} <= used
    assert all(r["path"].startswith(f"{MOUNT}/sign/{key}") for r in revoked["auditReads"])
    assert f"{namespace}/app (sign 1)" in timeline["Audited"] and "key version(s) used: 1" in timeline["Audited"]


def test_a_leaked_exported_key_leaves_the_secret_at_once_and_its_material_is_denylisted(
        custom: Any, core: Any, api_client: Any, vault: hvac.Client, namespace: str) -> None:
    key, rotator = transit_env(core, vault, namespace, custom, kv_writes=True)
    create_key(vault, key, "ed25519", exportable=True)
    policy(custom, namespace, "orders", {**transit_policy_spec(key, rotator, window="1s"),
                                         "transit": {"key": key, "export": {"type": "signing-key"}}})
    rotate_now(custom, namespace, "orders")
    wait_rotations(custom, namespace, "orders", 1, timeout=60)
    wait_for(lambda: delivered(core, namespace).get("key-vlatest") == "2", 30, what="version 2 delivered")
    leaked = exported(vault, key, 2)
    kubernetes.client.AppsV1Api(api_client).create_namespaced_deployment(namespace, {  # signs with the material
        "metadata": {"name": "signer"}, "spec": {"selector": {"matchLabels": {"app": "signer"}}, "template": {
            "metadata": {"labels": {"app": "signer"}}, "spec": pod_spec("orders", "volume")}}})
    incident(custom, namespace, "key-leak", {"secretSourceRef": {"name": "orders"},
                                             "exposure": {"where": "log", "reference": "debug dump"}})

    done = incident_phase(custom, namespace, "key-leak", "Prevented", timeout=60)
    assert done["exposedVersion"] == "2" and len(done["denylist"]) == 1
    assert done["blastRadius"]["keys"] == ["key-v2"]
    assert [(c["kind"], c["name"]) for c in done["blastRadius"]["consumers"]] == [("Deployment", "signer")]
    identified = next(e["message"] for e in done["timeline"] if e["action"] == "Identified")
    assert "exported to Secret orders (exposed material in key-v2): 1 consumer(s): Deployment/signer" in identified
    exports = [r for r in done["auditReads"] if r["operation"] == "export"]  # the test's own, as Vault's root
    assert exports and all(r["path"].startswith(f"{MOUNT}/export/signing-key/{key}") for r in exports)
    wait_for(lambda: delivered(core, namespace).get("key-vlatest") == "3", 30, what="version 3 delivered")
    assert delivered(core, namespace) == {"transitKey": key, "key-v3": exported(vault, key, 3), "key-vlatest": "3"}
    config = vault.secrets.transit.read_key(key, mount_point=MOUNT)["data"]
    assert (config["latest_version"], config["min_decryption_version"], config["min_encryption_version"]) == (3, 3, 3)
    wait_ready(custom, namespace, "orders")  # the new material is not refused
    assert leaked not in json.dumps(get(custom, namespace, "leakincidents", "key-leak"))
