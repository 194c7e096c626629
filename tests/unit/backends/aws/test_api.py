"""spec.aws and the operator's AWS connections, as the models validate them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rotor.api.secretsource import SecretSourceSpec
from rotor.config import AwsConnection, Settings

ROLE = "arn:aws:iam::123456789012:role/rotor-team-a-app"


def spec(aws: dict[str, Any]) -> SecretSourceSpec:
    return SecretSourceSpec.model_validate({"provider": "aws", "aws": {"roleArn": ROLE, **aws}})


def test_secrets_manager_by_name_or_arn_with_defaults() -> None:
    by_name = spec({"secretsManager": {"secretId": "prod/app/db"}})
    assert by_name.aws is not None and by_name.aws.connection == "default"
    assert by_name.aws.secrets_manager is not None and by_name.aws.secrets_manager.format == "JSON"
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app/db-AbCdEf"
    assert spec({"secretsManager": {"secretId": arn, "versionStage": "AWSPREVIOUS"}}).aws is not None


@pytest.mark.parametrize("aws", [
    {"secretsManager": {"secretId": "s"}, "roleArn": "arn:aws:iam::123:role/short-account"},
    {"secretsManager": {"secretId": "s", "versionId": "too-short"}},
    {"secretsManager": {"secretId": "has space"}},
    {"parameterStore": {"path": "no-leading-slash"}},
    {"secretsManager": {"secretId": "s"}, "endpoint": "https://attacker.example"},  # no addresses in specs
])
def test_invalid_specs_are_refused(aws: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(aws)


def test_parameter_store_by_name_or_path() -> None:
    assert spec({"parameterStore": {"name": "/prod/app/password", "version": 3}}).aws is not None
    assert spec({"parameterStore": {"path": "/prod/app/"}}).aws is not None


def connection(**fields: Any) -> AwsConnection:
    return AwsConnection.model_validate({"region": "eu-west-1", "role_arn_pattern": "arn:.*", **fields})


def test_a_connection_defaults_to_the_sts_audience() -> None:
    made = connection()
    assert made.audience == "sts.amazonaws.com" and made.endpoint_url is None and made.session_seconds == 3600


@pytest.mark.parametrize("fields", [
    {"region": "EU-WEST-1"},
    {"role_arn_pattern": "arn:(unclosed"},
    {"endpoint_url": "ftp://x"},
    {"session_seconds": 60},
])
def test_bad_connections_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        connection(**fields)


def test_connections_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTOR_AWS_CONNECTIONS", '{"default": {"region": "us-east-1", '
                       '"role_arn_pattern": "arn:aws:iam::123456789012:role/{namespace}-.+"}}')
    assert Settings().aws_connections["default"].region == "us-east-1"
