"""AwsBackend before any request: what it declares, its handles, and the checks that refuse a
spec without asking for a token or calling AWS (the reads themselves: tests/integration/aws)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rotor.api.capabilities import Capability
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.aws import AwsBackend
from rotor.backends.aws.errors import StaleCredentials
from rotor.backends.protocols import (
    Actor,
    AuditTrail,
    Backend,
    InvalidSpec,
    LeaseIssuer,
    PermissionDenied,
    SecretHandle,
    StagedVersions,
    StaticCredentials,
    VersionStore,
)
from rotor.config import AwsConnection

CONNECTION = AwsConnection(region="eu-west-1", endpoint_url="http://127.0.0.1:9",
                           role_arn_pattern=r"arn:aws:iam::123456789012:role/{namespace}-.+")


def make(asked: list[tuple[str, ...]]) -> AwsBackend:
    async def request_token(namespace: str, service_account: str, audience: str, seconds: int) -> tuple[str, Any]:
        asked.append((namespace, service_account, audience, str(seconds)))
        raise AssertionError("no token may be requested for a refused spec")

    return AwsBackend({"default": CONNECTION}, request_token)


def spec(**aws: Any) -> SecretSourceSpec:
    fields = {"roleArn": "arn:aws:iam::123456789012:role/team-a-app", "secretsManager": {"secretId": "app/db"},
              **aws}
    return SecretSourceSpec.model_validate({"provider": "aws", "serviceAccountName": "app", "aws": fields})


def test_it_reads_and_writes_versions_of_secrets_manager_secrets_only() -> None:
    backend = make([])
    assert isinstance(backend, Backend)
    assert backend.capabilities == frozenset({Capability.READ, Capability.WRITE_VERSION, Capability.VERSIONS})
    handle = backend.bind("team-a", spec())
    assert isinstance(handle, SecretHandle) and isinstance(handle, StagedVersions)
    assert handle.where == "aws:default/secretsmanager/app/db" and handle.actor == "team-a/app"
    for capability in (LeaseIssuer, StaticCredentials, AuditTrail):
        assert not isinstance(handle, capability)
    ssm = backend.bind("team-a", spec(secretsManager=None, parameterStore={"name": "/x/y"}))
    assert isinstance(ssm, SecretHandle) and not isinstance(ssm, VersionStore)


def test_a_rotator_role_is_a_role_of_the_source_account_the_pattern_allows() -> None:
    backend = make([])
    handle = backend.bind("team-a", spec(), Actor(service_account="rotator", role="team-a-rotator"))
    assert handle.actor == "team-a/rotator"
    with pytest.raises(InvalidSpec, match="team-b-rotator"):
        backend.bind("team-a", spec(), Actor(service_account="rotator", role="team-b-rotator"))


def test_describe_names_connection_service_and_secret() -> None:
    backend = make([])
    assert backend.describe("team-a", spec(secretsManager=None, parameterStore={"path": "/team-a/"})) == (
        "aws:default/ssm/team-a/")
    assert backend.describe("team-a", spec(secretsManager=None, parameterStore={"name": "/x/y"})) == (
        "aws:default/ssm/x/y")


@pytest.mark.parametrize(("aws", "field"), [
    ({"roleArn": "arn:aws:iam::123456789012:role/team-b-app"}, "spec.aws.roleArn"),  # another namespace's
    ({"roleArn": "arn:aws:iam::210987654321:role/team-a-app"}, "spec.aws.roleArn"),  # another account
    ({"connection": "elsewhere"}, "spec.aws.connection"),
])
def test_refused_specs_name_the_field_before_any_token_is_asked_for(aws: dict[str, Any], field: str) -> None:
    asked: list[tuple[str, ...]] = []
    backend = make(asked)
    with pytest.raises(InvalidSpec) as raised:
        asyncio.run(backend.fetch("team-a", spec(**aws)))
    assert field in raised.value.message
    assert asked == []


class Sessions:
    """Stands in for the login cache: the first session handed out is a cached one, later ones fresh."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def session(self, conn: Any, identity: Any) -> tuple[object, bool]:
        self.events.append("session")
        return object(), self.events.count("session") == 1

    def forget(self, identity: Any) -> None:
        self.events.append("forget")


def run_as(outcomes: list[Exception | str]) -> tuple[Any, list[str]]:
    backend, sessions = make([]), Sessions()
    backend._logins = sessions  # type: ignore[assignment]
    pending = iter(outcomes)

    async def action(session: object) -> str:
        outcome = next(pending)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    try:
        result: Any = asyncio.run(backend._as(None, None, action))  # type: ignore[arg-type]
    except Exception as exc:
        result = exc
    return result, sessions.events


def test_cached_credentials_aws_no_longer_accepts_get_one_fresh_login() -> None:
    result, events = run_as([StaleCredentials("expired"), "read"])
    assert result == "read" and events == ["session", "forget", "session"]


def test_fresh_credentials_refused_are_a_denial_and_a_denial_is_not_retried() -> None:
    result, events = run_as([StaleCredentials("expired"), StaleCredentials("still")])
    assert isinstance(result, StaleCredentials) and events == ["session", "forget", "session"]
    result, events = run_as([PermissionDenied("no")])
    assert isinstance(result, PermissionDenied) and events == ["session"]
