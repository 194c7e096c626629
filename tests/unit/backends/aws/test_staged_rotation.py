"""Rotation strategies on a Secrets Manager secret (StagedVersions), against moto in-process (its
request handling without a server; the server with IAM enforced: tests/integration/aws)."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto import settings as moto_settings

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.aws import AwsBackend
from rotor.backends.aws.values import kept_label, version_token
from rotor.backends.protocols import InvalidSpec, NotFound, StagedVersions, VersionConflict, VersionStore
from rotor.config import AwsConnection
from rotor.engines.rotation.strategies import strategy_class

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/team-a-app"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # moto's IAM enforcement is process-wide: in a full run the integration suite's moto server (same
    # process, session-scoped) has it on until the session ends. These tests do not sign as IAM users.
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")


def backend() -> AwsBackend:
    async def token(namespace: str, service_account: str, audience: str, seconds: int) -> tuple[str, Any]:
        return "header.payload.signature", None

    return AwsBackend({"default": AwsConnection(region=REGION, role_arn_pattern=r"arn:aws:iam::123456789012:role/"
                                                r"{namespace}-.+")}, token)


def source(secret_id: str, fmt: str = "JSON") -> SecretSourceSpec:
    return SecretSourceSpec.model_validate({"provider": "aws", "serviceAccountName": "app", "aws": {
        "roleArn": ROLE, "secretsManager": {"secretId": secret_id, "format": fmt}}})


def policy(strategy: str = "overlap", **extra: Any) -> RotationPolicySpec:
    return RotationPolicySpec.model_validate({"secretSourceRef": {"name": "db"}, "strategy": strategy,
                                              "schedule": {"interval": "720h"}, **extra})


def labels(aws: Any, name: str) -> dict[str, list[str]]:
    listed = aws.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]
    return {v["VersionId"]: sorted(v["VersionStages"]) for v in listed}


def value(aws: Any, name: str, stage: str = "AWSCURRENT") -> dict[str, Any]:
    return dict(json.loads(aws.get_secret_value(SecretId=name, VersionStage=stage)["SecretString"]))


def clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def test_a_secrets_manager_handle_is_a_staged_version_store(aws: Any) -> None:
    handle = backend().bind("team-a", source("db"))
    assert isinstance(handle, VersionStore) and isinstance(handle, StagedVersions)
    assert isinstance(backend().bind("team-a", SecretSourceSpec.model_validate({
        "provider": "aws", "serviceAccountName": "app", "aws": {"roleArn": ROLE, "parameterStore": {
            "name": "/a/b"}}})), StagedVersions) is False


class Pins:
    """The SecretSource engine as a staged rotation asks it to deliver a version (ports.VersionPins)."""

    def __init__(self) -> None:
        self.pinned: dict[tuple[str, str], str | None] = {}

    def pin_version(self, namespace: str, name: str, version: str | None) -> None:
        self.pinned[(namespace, name)] = version


def test_overlap_stages_moves_readers_then_promotes_and_retires_the_old_version(aws: Any) -> None:
    first = aws.create_secret(Name="db", SecretString=json.dumps({"username": "app", "password": "one", "port": 5432}))
    old = first["VersionId"]
    strategy = strategy_class(policy())(policy(), backend().bind("team-a", source("db")), clock)
    pins = Pins()
    strategy.attach(pins, "team-a", "db")  # type: ignore[arg-type]  # only pin_version is asked of it

    async def go() -> None:
        captured = await strategy.capture({})
        assert captured == {"version": old}
        new = await strategy.publish(captured, "rot1")
        assert new == {"version": version_token("db", "rot1")}
        pending = value(aws, "db", "AWSPENDING")
        assert pending["password"] != "one" and pending["username"] == "app" and pending["port"] == 5432  # types
        assert value(aws, "db")["password"] == "one"  # AWSCURRENT stays until readers moved
        assert await strategy.publish(captured, "rot1") == new  # a retry adopts, writes nothing
        assert len(labels(aws, "db")) == 2
        for phase in ("Propagating", "Verifying"):
            await strategy.follow(phase, new)
            assert pins.pinned[("team-a", "db")] == new["version"]  # the Secret gets the new one first
            assert value(aws, "db")["password"] == "one"
        await strategy.follow("Overlapping", new)
        await strategy.follow("Overlapping", new)  # idempotent
        assert pins.pinned[("team-a", "db")] is None
        assert labels(aws, "db") == {old: sorted(["AWSPREVIOUS", kept_label(old)]),
                                     new["version"]: sorted(["AWSCURRENT", kept_label(new["version"])])}
        assert value(aws, "db", "AWSPREVIOUS")["password"] == "one"  # readable through the overlap window
        await strategy.revoke(captured, new, None)
        await strategy.revoke(captured, new, None)  # idempotent
        assert labels(aws, "db") == {old: [], new["version"]: sorted(["AWSCURRENT", kept_label(new["version"])])}
        with pytest.raises(NotFound):
            await strategy.store.read_version(old)

    asyncio.run(go())


def test_a_crash_after_staging_adopts_the_pending_version(aws: Any) -> None:
    old = aws.create_secret(Name="db", SecretString=json.dumps({"password": "one"}))["VersionId"]
    handle = backend().bind("team-a", source("db"))
    assert isinstance(handle, StagedVersions)

    async def go() -> None:
        pending = await handle.stage_version({"password": "two"}, "rot1")  # then the operator died
        assert labels(aws, "db")[pending] == sorted(["AWSPENDING", kept_label(pending)])
        assert value(aws, "db")["password"] == "one"
        strategy = strategy_class(policy())(policy(), handle, clock)
        assert await strategy.publish({"version": old}, "rot1") == {"version": pending}
        assert value(aws, "db", "AWSPENDING")["password"] == "two"  # the staged value, not a second one
        assert len(labels(aws, "db")) == 2
        await strategy.revoke({"version": old}, {"version": pending}, None)  # a crash skipped Overlapping's move
        assert value(aws, "db")["password"] == "two" and "AWSPENDING" not in labels(aws, "db")[pending]

    asyncio.run(go())


def test_versioned_keeps_n_labelled_versions(aws: Any) -> None:
    first = aws.create_secret(Name="db", SecretString=json.dumps({"password": "v1"}))["VersionId"]
    spec = policy("versioned", versioned={"keep": 3})
    strategy = strategy_class(spec)(spec, backend().bind("team-a", source("db")), clock)

    async def go() -> list[str]:
        published = [first]
        for n in range(4):
            old = await strategy.capture({})
            new = await strategy.publish(old, f"rot{n}")
            await strategy.revoke(old, new, None)
            published.append(new["version"])
            alive = await strategy.store.list_versions()
            assert alive == published[-3:], (n, alive)
        return published

    published = asyncio.run(go())
    assert [v for v, stages in labels(aws, "db").items() if stages] == published[-3:]
    assert aws.get_secret_value(SecretId="db", VersionId=published[-2])["SecretString"]  # pinned readers keep it


def test_rollback_unpins_readers_and_retires_the_new_version(aws: Any) -> None:
    old = aws.create_secret(Name="db", SecretString=json.dumps({"password": "one"}))["VersionId"]
    strategy = strategy_class(policy())(policy(), backend().bind("team-a", source("db")), clock)
    pins = Pins()
    strategy.attach(pins, "team-a", "db")  # type: ignore[arg-type]

    async def go() -> None:
        new = await strategy.publish({"version": old}, "rot1")
        await strategy.follow("Verifying", new)
        await strategy.rollback({"version": old}, new)
        assert pins.pinned[("team-a", "db")] is None
        await strategy.rollback({"version": old}, new)  # idempotent
        assert value(aws, "db")["password"] == "one"
        assert labels(aws, "db")[new["version"]] == []

    asyncio.run(go())


def test_version_store_writes_compare_with_awscurrent(aws: Any) -> None:
    handle = backend().bind("team-a", source("fresh"))
    assert isinstance(handle, VersionStore)

    async def go() -> None:
        assert await handle.read_version() == ({}, None)  # (moto fails listing a missing secret's versions)
        first = await handle.write_version({"password": "one"}, "0")
        assert await handle.read_version() == ({"password": "one"}, first)
        with pytest.raises(VersionConflict):
            await handle.write_version({"password": "two"}, "0")
        second = await handle.write_version({"password": "two"}, first)
        assert await handle.list_versions() == [first, second]
        with pytest.raises(InvalidSpec):
            await handle.destroy_versions([second])  # AWSCURRENT cannot be retired
        await handle.destroy_versions([first, "never-written-" + "0" * 20])
        assert await handle.list_versions() == [second]
        assert isinstance(await handle.version_created(first), datetime.datetime)
        with pytest.raises(NotFound):
            await handle.read_version("1")
        await handle.set_custom_metadata({"rotor-rotation-x": "r1", "owner": "a"})
        await handle.set_custom_metadata({"owner": ""})
        assert await handle.custom_metadata() == {"rotor-rotation-x": "r1"}

    asyncio.run(go())


def test_raw_secrets_rotate_their_one_value(aws: Any) -> None:
    aws.create_secret(Name="token", SecretString="plain")
    spec = policy(generator={"key": "value", "length": 24})
    strategy = strategy_class(spec)(spec, backend().bind("team-a", source("token", "Raw")), clock)
    new = asyncio.run(strategy.publish({}, "rot1"))
    asyncio.run(strategy.follow("Overlapping", new))
    # (moto answers a read without a stage from the version last made current by a write, not by a label
    # move: name the stage, as Rotor does)
    now = aws.get_secret_value(SecretId="token", VersionStage="AWSCURRENT")["SecretString"]
    assert now != "plain" and len(now) == 24
    wrong = strategy_class(policy())(policy(), backend().bind("team-a", source("token", "Raw")), clock)
    with pytest.raises(InvalidSpec, match=r"generator\.key"):
        asyncio.run(wrong.publish({}, "rot2"))
