"""AwsBackend on its own against moto, with ServiceAccount tokens from the real API server: session
caching, single-flight logins, collapsed reads and the metrics they leave."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from typing import Any

import kubernetes
import pytest

from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.aws import AwsBackend
from rotor.observability.metrics import BACKEND_REQUESTS, COLLAPSED_READS, LOGINS, TOKEN_CACHE_HITS

from .conftest import AwsTenant, aws_connection
from .testbed import MotoTestbed


def backend(core: kubernetes.client.CoreV1Api, moto: MotoTestbed, name: str) -> AwsBackend:
    async def request_token(namespace: str, service_account: str, audience: str,
                            seconds: int) -> tuple[str, datetime.datetime]:
        body = {"spec": {"audiences": [audience], "expirationSeconds": seconds}}
        made = await asyncio.to_thread(core.create_namespaced_service_account_token, service_account, namespace,
                                       body)
        return made.status.token, made.status.expiration_timestamp

    return AwsBackend({name: aws_connection(moto)}, request_token)


def spec(tenant: AwsTenant, connection: str, secret_id: str) -> SecretSourceSpec:
    return SecretSourceSpec.model_validate({
        "provider": "aws", "serviceAccountName": tenant.service_account,
        "aws": {"connection": connection, "roleArn": tenant.role_arn, "secretsManager": {"secretId": secret_id}}})


def sample(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


@pytest.fixture
def connection() -> str:
    return f"c{uuid.uuid4().hex[:8]}"  # metrics labelled by it start at zero


def test_concurrent_reads_share_one_login_and_identical_ones_one_request(
        moto_server: MotoTestbed, tenant: AwsTenant, core: Any, connection: str) -> None:
    sm = moto_server.admin("secretsmanager")
    names = [f"{tenant.namespace}/s{i}" for i in range(8)]
    for i, name in enumerate(names):
        sm.create_secret(Name=name, SecretString=f'{{"i": "{i}"}}')
    aws = backend(core, moto_server, connection)
    label = f"aws:{connection}"

    async def scenario() -> list[Any]:
        try:
            distinct = [aws.fetch(tenant.namespace, spec(tenant, connection, n)) for n in names]
            same = [aws.fetch(tenant.namespace, spec(tenant, connection, names[0])) for _ in range(5)]
            return list(await asyncio.gather(*distinct, *same))
        finally:
            await aws.close()

    results = asyncio.run(scenario())
    assert [r.values for r in results[:8]] == [{"i": str(i).encode()} for i in range(8)]
    assert all(r.values == {"i": b"0"} for r in results[8:])
    assert len(moto_server.logins(tenant.role_arn)) == 1
    assert sample(LOGINS, label, "ok") == 1
    assert sample(COLLAPSED_READS, label) >= 1
    assert sample(BACKEND_REQUESTS, label, "login", "200") == 1
    assert sample(BACKEND_REQUESTS, label, "GetSecretValue", "200") <= 8 + 4


def test_the_session_is_cached_until_shortly_before_it_expires(
        moto_server: MotoTestbed, tenant: AwsTenant, core: Any, connection: str) -> None:
    name = f"{tenant.namespace}/cached"
    moto_server.admin("secretsmanager").create_secret(Name=name, SecretString='{"k": "v"}')
    aws = backend(core, moto_server, connection)
    source = spec(tenant, connection, name)

    async def scenario() -> None:
        try:
            await aws.fetch(tenant.namespace, source)
            await aws.fetch(tenant.namespace, source)
            assert len(moto_server.logins(tenant.role_arn)) == 1
            assert sample(TOKEN_CACHE_HITS, f"aws:{connection}") == 1
            [session] = aws._logins.sessions.values()
            left = (session.expiration - datetime.datetime.now(datetime.UTC)).total_seconds()
            assert 0.7 * 3600 < session.renew_at - time.monotonic() < 0.8 * left + 1  # renews at 80%
            session.renew_at = time.monotonic() - 1  # as if 80% of its lifetime had passed
            await aws.fetch(tenant.namespace, source)
            assert len(moto_server.logins(tenant.role_arn)) == 2
        finally:
            await aws.close()

    asyncio.run(scenario())
