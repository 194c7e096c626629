"""The backend contract for AWS Secrets Manager on moto (IAM enforced): the StagedVersions contract
(tests/contract/staged.py), as the Vault contract runs in tests/integration/backends/test_vault_contract.py.
The real AwsBackend, logging in with real ServiceAccount tokens of the stack's API server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.aws import AwsBackend
from rotor.backends.aws.identity import TokenRequester
from rotor.backends.protocols import Actor, Backend
from tests.contract.staged import StagedVersionsContract
from tests.devenv import Stack
from tests.devenv.process import free_port
from tests.devenv.stack import ISSUER

from .conftest import AwsTenant, aws_connection
from .rotation import ROTATE_ACTIONS
from .testbed import MotoTestbed

# Beyond rotation: creating a secret (a write with check-and-set "0") and tags (custom metadata).
CONTRACT_ACTIONS = [*ROTATE_ACTIONS, "secretsmanager:CreateSecret", "secretsmanager:TagResource",
                    "secretsmanager:UntagResource"]


@dataclass
class AwsSubject:
    backend: Backend
    namespace: str
    service_account: str
    denied: Actor
    role_arn: str
    prefix: str
    moto: MotoTestbed
    tokens: TokenRequester

    def spec(self, name: str, *, actor: Actor | None = None) -> SecretSourceSpec:
        """Secret NAME read as ACTOR (its role: a role name of the same account)."""
        role_arn = f"{self.role_arn.rsplit('/', 1)[0]}/{actor.role}" if actor and actor.role else self.role_arn
        account = (actor and actor.service_account) or self.service_account
        return SecretSourceSpec.model_validate({"provider": "aws", "serviceAccountName": account,
                                                "aws": {"roleArn": role_arn,
                                                        "secretsManager": {"secretId": f"{self.prefix}/{name}"}}})

    def put(self, name: str, data: Mapping[str, str]) -> str:
        """Staged, then moved (moto's plain put moves AWSCURRENT from the version last written, which is
        not where the label is after label moves)."""
        sm, secret_id = self.moto.admin("secretsmanager"), f"{self.prefix}/{name}"
        listed = sm.list_secrets(Filters=[{"Key": "name", "Values": [secret_id]}])["SecretList"]
        if not [s for s in listed if s["Name"] == secret_id]:
            return str(sm.create_secret(Name=secret_id, SecretString=json.dumps(data))["VersionId"])
        current = sm.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["VersionId"]
        new = str(sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(data),
                                      VersionStages=["AWSPENDING"])["VersionId"])
        sm.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSCURRENT", MoveToVersionId=new,
                                       RemoveFromVersionId=current)
        sm.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSPENDING", RemoveFromVersionId=new)
        return new

    def unreachable(self) -> Backend:
        down = aws_connection(self.moto, endpoint_url=f"http://127.0.0.1:{free_port()}", timeout_seconds=1)
        return AwsBackend({"default": down}, self.tokens)


class TestAwsSecretsManagerContract(StagedVersionsContract):
    @pytest.fixture
    def staged_under_test(self, stack: Stack, moto_server: MotoTestbed, tenant: AwsTenant) -> Iterator[AwsSubject]:
        async def tokens(namespace: str, service_account: str, audience: str, seconds: int) -> tuple[str, Any]:
            jwt = await asyncio.to_thread(stack.service_account_token, namespace, service_account, audience, seconds)
            return jwt, None

        ns = tenant.namespace
        role_arn = moto_server.role(f"{ns}-contract-{uuid.uuid4().hex[:6]}", CONTRACT_ACTIONS, namespace=ns,
                                    service_account=tenant.service_account, issuer=ISSUER)
        backend = AwsBackend({"default": aws_connection(moto_server)}, tokens)
        yield AwsSubject(backend, ns, tenant.service_account, Actor(role=tenant.denied_arn.rsplit("/", 1)[1]),
                         role_arn, f"{ns}/{uuid.uuid4().hex[:8]}", moto_server, tokens)
        asyncio.run(backend.close())
