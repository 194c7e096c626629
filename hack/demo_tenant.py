"""Namespace `demo` as the samples (samples/*.yaml) expect it, on the local stack of tests/devenv.

What a platform team would have set up before an app team applies the samples: the ServiceAccounts
`app` (reads) and `rotator` (rotates), their Vault roles, two PostgreSQL users that Vault's database
engine manages as a blue/green static-role pair, and the KV secret `demo/db` holding the blue login.
`make run` and tests/integration/test_samples.py both build the tenant with prepare(), so the demo
and the test run the samples on exactly the same set-up.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import yaml
from tests.devenv import Stack

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
NAMESPACE = "demo"
READER_ROLE, ROTATOR_ROLE = "demo-app", "demo-rotator"
STATIC_ROLES = {"demo-blue": "demo_blue", "demo-green": "demo_green"}  # Vault static role -> PostgreSQL user
KV_PATH = "demo/db"  # in the KV v2 mount `secret`
PLURALS = {"SecretSource": "/apis/rotor.dev/v1alpha1/namespaces/{ns}/secretsources",
           "RotationPolicy": "/apis/rotor.dev/v1alpha1/namespaces/{ns}/rotationpolicies",
           "LeakIncident": "/apis/rotor.dev/v1alpha1/namespaces/{ns}/leakincidents",
           "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments"}

# The rotator may write new KV versions of demo/* and destroy old ones, and rotate the demo static
# roles; the reader may only read.
ROTATOR_POLICY = "\n".join([
    'path "secret/data/demo/*" { capabilities = ["create", "update", "read"] }',
    'path "secret/metadata/demo/*" { capabilities = ["create", "update", "read"] }',
    'path "secret/destroy/demo/*" { capabilities = ["update"] }',
    'path "database/static-creds/demo-*" { capabilities = ["read"] }',
    'path "database/rotate-role/demo-*" { capabilities = ["update"] }',
])


def prepare(stack: Stack) -> None:
    """Everything the samples need inside the (existing) namespace `demo` and in Vault and PostgreSQL."""
    for account in ("app", "rotator"):
        stack.api_request("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", {"metadata": {"name": account}})
    for role, account, policy in ((READER_ROLE, "app", 'path "secret/data/demo/*" { capabilities = ["read"] }'),
                                  (ROTATOR_ROLE, "rotator", ROTATOR_POLICY)):
        stack.vault_request("PUT", f"/v1/sys/policies/acl/{role}", {"policy": policy})
        stack.vault_request("POST", f"/v1/auth/kubernetes/role/{role}", {
            "bound_service_account_names": [account], "bound_service_account_namespaces": [NAMESPACE],
            "policies": [role], "audience": "vault", "ttl": "1h"})
    info = stack.info
    with psycopg.connect(info.pg_dsn, autocommit=True) as conn:  # the users exist before Vault manages them
        for user in STATIC_ROLES.values():
            conn.execute(f"CREATE ROLE {user} WITH LOGIN PASSWORD '{secrets.token_urlsafe(24)}'")
    for role, user in STATIC_ROLES.items():
        # Vault sets a password of its own right away; rotations ask it for new ones.
        stack.vault_request("POST", f"/v1/database/static-roles/{role}",
                            {"db_name": "postgres", "username": user, "rotation_period": "720h"})
    blue = stack.vault_request("GET", "/v1/database/static-creds/demo-blue")["data"]
    stack.vault_request("POST", f"/v1/secret/data/{KV_PATH}", {"data": {
        "username": blue["username"], "password": blue["password"],
        "host": info.pg_host, "port": str(info.pg_port), "dbname": "postgres"}})


def samples(*kinds: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, document) of every sample of KINDS (all kinds when none are named)."""
    for path in sorted(SAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and (not kinds or doc["kind"] in kinds):
                yield path.name, doc


def apply(stack: Stack, doc: dict[str, Any]) -> dict[str, Any]:
    """Create one sample in namespace `demo` as written (strict field validation: a typo fails)."""
    path = PLURALS[doc["kind"]].format(ns=NAMESPACE) + "?fieldValidation=Strict"
    created: dict[str, Any] = stack.api_request("POST", path, doc)
    return created
