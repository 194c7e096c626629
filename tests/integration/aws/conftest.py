"""The AWS testbed: moto in server mode with IAM enforced (testbed.py), and Rotor with an AWS connection.

`moto_server` is one per session. `aws_rotor` is the operator with an AWS connection to it; the session
operator steps aside meanwhile (`operator_aside`: two operators must never act on the same objects).
Rotor's process environment holds the moto administrator's keys all along: tenant reads must never
use them (a role without access must still be refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest

from rotor.config import AwsConnection
from tests.devenv import StackInfo
from tests.devenv.stack import ISSUER

from ..conftest import OperatorLogs, RunningOperator, operator_settings
from .testbed import ACCOUNT, REGION, MotoTestbed

READ_ACTIONS = ["secretsmanager:GetSecretValue", "ssm:GetParameter", "ssm:GetParametersByPath"]
ROLE_PATTERN = rf"arn:aws:iam::{ACCOUNT}:role/{{namespace}}-.+"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoTestbed]:
    testbed = MotoTestbed().start()
    testbed.enforce_iam()
    testbed.admin("iam").create_open_id_connect_provider(
        Url=ISSUER, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["0" * 40])
    yield testbed
    testbed.close()


def aws_connection(moto: MotoTestbed, **overrides: Any) -> AwsConnection:
    fields: dict[str, Any] = {"region": REGION, "endpoint_url": moto.url, "role_arn_pattern": ROLE_PATTERN,
                              "rate_per_second": 500, "timeout_seconds": 5, **overrides}
    return AwsConnection(**fields)


@pytest.fixture(scope="module")
def aws_rotor(info: StackInfo, operator_aside: None, operator_logs: OperatorLogs,
              moto_server: MotoTestbed) -> Iterator[RunningOperator]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", moto_server.admin_keys[0])
        env.setenv("AWS_SECRET_ACCESS_KEY", moto_server.admin_keys[1])
        env.setenv("AWS_DEFAULT_REGION", REGION)
        with RunningOperator(operator_settings(info, aws_connections={"default": aws_connection(moto_server)})
                             ) as running:
            yield running


@dataclass(frozen=True)
class AwsTenant:
    namespace: str
    service_account: str
    role_arn: str  # may read Secrets Manager and SSM
    denied_arn: str  # may log in (same trust policy) but read nothing


@pytest.fixture
def tenant(core: kubernetes.client.CoreV1Api, namespace: str, moto_server: MotoTestbed) -> AwsTenant:
    """ServiceAccount `app` of the test namespace, and two roles its namespace may name."""
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    who = {"namespace": namespace, "service_account": "app", "issuer": ISSUER}
    return AwsTenant(namespace, "app", moto_server.role(f"{namespace}-reader", READ_ACTIONS, **who),
                     moto_server.role(f"{namespace}-nothing", [], **who))
