"""The backend contracts for AWS on moto (IAM enforced), as the Vault run in
tests/integration/backends/test_vault_contract.py: Secrets Manager runs the read, VersionStore and
StagedVersions contracts; SSM Parameter Store (read-only handles) the read contract. What AWS does
differently by its nature is set as each contract's capability attributes. The real AwsBackend, logging
in with real ServiceAccount tokens of the stack's API server."""

from __future__ import annotations

import asyncio
import datetime
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
from rotor.planning import times
from tests.contract.reads import ReadContract
from tests.contract.staged import StagedVersionsContract
from tests.contract.versions import VersionStoreContract
from tests.devenv import Stack
from tests.devenv.process import free_port
from tests.devenv.stack import ISSUER

from .conftest import AwsTenant, aws_connection
from .rotation import ROTATE_ACTIONS
from .testbed import MotoTestbed

# Beyond rotation: creating a secret (a write with check-and-set "0") and tags (custom metadata).
CONTRACT_ACTIONS = [*ROTATE_ACTIONS, "secretsmanager:CreateSecret", "secretsmanager:TagResource",
                    "secretsmanager:UntagResource"]
PARAMETER_PROPERTY = "password"  # an SSM parameter holds one property, named by its name's last segment


@dataclass
class AwsSubject:
    """Shared by both: the backend, who reads, and moto's administrator for seeding."""

    backend: Backend
    namespace: str
    service_account: str
    denied: Actor  # the tenant's role without a single permission
    role_arn: str
    prefix: str
    moto: MotoTestbed
    tokens: TokenRequester

    def role(self, actor: Actor | None) -> str:
        """The role ARN ACTOR acts as (its role: a role name of the same account)."""
        return f"{self.role_arn.rsplit('/', 1)[0]}/{actor.role}" if actor and actor.role else self.role_arn

    def now(self) -> datetime.datetime:
        return times.now()  # moto runs in this process

    def unreachable(self) -> Backend:
        down = aws_connection(self.moto, endpoint_url=f"http://127.0.0.1:{free_port()}", timeout_seconds=1)
        return AwsBackend({"default": down}, self.tokens)


class SecretsManagerSubject(AwsSubject):
    absent_version = str(uuid.UUID(int=0))  # a VersionId as AWS makes them (ClientRequestTokens: UUIDs)

    def where(self, name: str) -> str:
        return f"aws:default/secretsmanager/{self.prefix}/{name}"

    def spec(self, name: str, *, version: str | None = None, actor: Actor | None = None) -> SecretSourceSpec:
        ref: dict[str, Any] = {"secretId": f"{self.prefix}/{name}"}
        if version:
            ref["versionId"] = version
        return SecretSourceSpec.model_validate({
            "provider": "aws", "serviceAccountName": (actor and actor.service_account) or self.service_account,
            "aws": {"roleArn": self.role(actor), "secretsManager": ref}})

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


class ParameterStoreSubject(AwsSubject):
    absent_version = "9"  # parameter versions are numbers; the cases write fewer

    def _name(self, name: str) -> str:
        return f"/{self.prefix}/{name}/{PARAMETER_PROPERTY}"

    def where(self, name: str) -> str:
        return f"aws:default/ssm/{self._name(name).lstrip('/')}"

    def spec(self, name: str, *, version: str | None = None, actor: Actor | None = None) -> SecretSourceSpec:
        ref: dict[str, Any] = {"name": self._name(name)}
        if version:
            ref["version"] = int(version)
        return SecretSourceSpec.model_validate({
            "provider": "aws", "serviceAccountName": (actor and actor.service_account) or self.service_account,
            "aws": {"roleArn": self.role(actor), "parameterStore": ref}})

    def put(self, name: str, data: Mapping[str, str]) -> str:
        [(key, value)] = data.items()
        assert key == PARAMETER_PROPERTY, "ReadContract.single_property: the cases seed `password` alone"
        answer = self.moto.admin("ssm").put_parameter(Name=self._name(name), Value=value, Type="SecureString",
                                                      Overwrite=True)
        return str(answer["Version"])


def _tokens(stack: Stack) -> TokenRequester:
    async def tokens(namespace: str, service_account: str, audience: str, seconds: int) -> tuple[str, Any]:
        jwt = await asyncio.to_thread(stack.service_account_token, namespace, service_account, audience, seconds)
        return jwt, None

    return tokens


class TestAwsSecretsManagerContract(ReadContract, VersionStoreContract, StagedVersionsContract):
    versioned_handles = True
    single_property = False
    numbered_versions = False  # VersionIds: UUIDs
    versions_kept = 2  # AWSCURRENT and AWSPREVIOUS; AWS deletes unlabelled versions itself
    destroys_latest_version = False  # AWSCURRENT cannot lose its label
    metadata_without_versions = False  # tags belong to an existing secret
    atomic_check_and_set = False  # Secrets Manager has none: the handle compares, then writes

    @pytest.fixture
    def backend_under_test(self, stack: Stack, moto_server: MotoTestbed,
                           tenant: AwsTenant) -> Iterator[SecretsManagerSubject]:
        ns, tokens = tenant.namespace, _tokens(stack)
        role_arn = moto_server.role(f"{ns}-contract-{uuid.uuid4().hex[:6]}", CONTRACT_ACTIONS, namespace=ns,
                                    service_account=tenant.service_account, issuer=ISSUER)
        backend = AwsBackend({"default": aws_connection(moto_server)}, tokens)
        yield SecretsManagerSubject(backend, ns, tenant.service_account,
                                    Actor(role=tenant.denied_arn.rsplit("/", 1)[1]), role_arn,
                                    f"{ns}/{uuid.uuid4().hex[:8]}", moto_server, tokens)
        asyncio.run(backend.close())


class TestAwsParameterStoreContract(ReadContract):
    versioned_handles = False  # the backend declares versions for Secrets Manager; a parameter is read-only
    single_property = True

    @pytest.fixture
    def backend_under_test(self, stack: Stack, moto_server: MotoTestbed,
                           tenant: AwsTenant) -> Iterator[ParameterStoreSubject]:
        tokens = _tokens(stack)
        backend = AwsBackend({"default": aws_connection(moto_server)}, tokens)
        yield ParameterStoreSubject(backend, tenant.namespace, tenant.service_account,
                                    Actor(role=tenant.denied_arn.rsplit("/", 1)[1]), tenant.role_arn,
                                    f"{tenant.namespace}/{uuid.uuid4().hex[:8]}", moto_server, tokens)
        asyncio.run(backend.close())
