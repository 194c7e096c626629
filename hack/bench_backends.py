"""The backend a `hack/bench.py` run reads: Vault of the local stack, or AWS as moto emulates it.

Each holds what differs per backend: the operator's connection (environment), per-namespace access,
writing a value, and the SecretSource spec reading it back. The value is always the key `value`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # bench.py puts the repository on sys.path only after importing this module
    from tests.devenv import Stack


class BenchBackend(Protocol):
    name: str  # for results keys (vault_requests_per_sync)
    label: str  # for the table (Vault requests per cycle)

    def env(self) -> dict[str, str]: ...
    def prepare(self, namespace: str) -> None: ...
    def put(self, namespace: str, i: int, value: str) -> None: ...
    def spec(self, namespace: str, i: int) -> dict[str, Any]: ...
    def close(self) -> None: ...


class VaultBench:
    name, label = "vault", "Vault"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def env(self) -> dict[str, str]:
        return {"ROTOR_VAULT_CONNECTIONS": json.dumps({"default": {"address": self.stack.info.vault_addr,
                                                                   "rate_per_second": 1000, "max_concurrency": 32}})}

    def prepare(self, namespace: str) -> None:
        self.stack.vault_request("PUT", f"/v1/sys/policies/acl/{namespace}",
                                 {"policy": f'path "secret/data/bench/{namespace}/*" {{ capabilities = ["read"] }}'})
        self.stack.vault_request("POST", f"/v1/auth/kubernetes/role/{namespace}", {
            "bound_service_account_names": ["app"], "bound_service_account_namespaces": [namespace],
            "policies": [namespace], "audience": "vault", "ttl": "1h"})

    def put(self, namespace: str, i: int, value: str) -> None:
        self.stack.vault_request("POST", f"/v1/secret/data/bench/{namespace}/s{i}", {"data": {"value": value}})

    def spec(self, namespace: str, i: int) -> dict[str, Any]:
        return {"provider": "vault", "vault": {"path": f"bench/{namespace}/s{i}", "role": namespace}}

    def close(self) -> None:
        return None


class AwsBench:
    """moto in server mode in the bench process (not the operator's: its CPU is not Rotor's), IAM
    enforced, one role per namespace (tests/integration/aws/testbed.py)."""

    name, label = "aws", "AWS"

    def __init__(self) -> None:
        from tests.devenv.stack import ISSUER
        from tests.integration.aws.testbed import ACCOUNT, REGION, MotoTestbed

        self.issuer = ISSUER
        self.moto = MotoTestbed().start()
        self.moto.enforce_iam()
        self.region, self.account = REGION, ACCOUNT
        self.roles: dict[str, str] = {}
        self.secrets = self.moto.admin("secretsmanager")

    def env(self) -> dict[str, str]:
        return {"ROTOR_AWS_CONNECTIONS": json.dumps({"default": {
            "region": self.region, "endpoint_url": self.moto.url, "rate_per_second": 1000, "max_concurrency": 32,
            "role_arn_pattern": f"arn:aws:iam::{self.account}:role/{{namespace}}-.+"}})}

    def prepare(self, namespace: str) -> None:
        self.roles[namespace] = self.moto.role(f"{namespace}-reader", ["secretsmanager:GetSecretValue"],
                                               namespace=namespace, service_account="app", issuer=self.issuer)

    def put(self, namespace: str, i: int, value: str) -> None:
        secret, body = f"bench/{namespace}/s{i}", json.dumps({"value": value})
        try:
            self.secrets.put_secret_value(SecretId=secret, SecretString=body)
        except self.secrets.exceptions.ResourceNotFoundException:
            self.secrets.create_secret(Name=secret, SecretString=body)

    def spec(self, namespace: str, i: int) -> dict[str, Any]:
        return {"provider": "aws", "aws": {"roleArn": self.roles[namespace],
                                           "secretsManager": {"secretId": f"bench/{namespace}/s{i}"}}}

    def close(self) -> None:
        self.moto.close()
