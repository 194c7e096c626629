"""KubernetesBackend: reads a Secret of another namespace with its owner's consent, and nothing more."""

from __future__ import annotations

import asyncio

import pytest

from rotor.api.capabilities import Capability
from rotor.api.keys import ALLOWED_NAMESPACES
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.kubernetes import KubernetesBackend
from rotor.backends.protocols import (
    Actor,
    AuditTrail,
    Backend,
    LeaseIssuer,
    NotFound,
    PermissionDenied,
    SecretHandle,
    StaticCredentials,
    VersionStore,
)
from rotor.planning.sync import ObservedSecret

SPEC = SecretSourceSpec.model_validate({"provider": "kubernetes", "kubernetes": {"namespace": "shared", "name": "db"}})


def backend(secrets: dict[tuple[str, str], ObservedSecret]) -> KubernetesBackend:
    async def read(namespace: str, name: str) -> ObservedSecret | None:
        return secrets.get((namespace, name))

    return KubernetesBackend(read)


def secret(allowed: str | None) -> ObservedSecret:
    annotations = {ALLOWED_NAMESPACES: allowed} if allowed is not None else {}
    return ObservedSecret("db", "Opaque", {"password": b"pw"}, annotations=annotations, resource_version="42")


def test_it_reads_only_and_bound_handles_implement_no_write_protocol() -> None:
    b = backend({})
    assert isinstance(b, Backend) and b.capabilities == frozenset({Capability.READ})
    handle = b.bind("app", SPEC, Actor(service_account="rotator", role="any"))
    assert isinstance(handle, SecretHandle)
    assert handle.where == b.describe("app", SPEC) == "kubernetes:shared/db"
    for protocol in (VersionStore, LeaseIssuer, StaticCredentials, AuditTrail):
        assert not isinstance(handle, protocol), protocol.__name__


@pytest.mark.parametrize("allowed", ["app", " other , app ", "*"])
def test_a_namespace_the_owner_allows_reads_the_secret(allowed: str) -> None:
    fetched = asyncio.run(backend({("shared", "db"): secret(allowed)}).fetch("app", SPEC))
    assert (dict(fetched.values), fetched.version) == ({"password": b"pw"}, "42")


@pytest.mark.parametrize("allowed", [None, "", "other", "apps"])
def test_without_consent_it_is_denied_and_says_how_to_allow(allowed: str | None) -> None:
    with pytest.raises(PermissionDenied) as denied:
        asyncio.run(backend({("shared", "db"): secret(allowed)}).fetch("app", SPEC))
    assert ALLOWED_NAMESPACES in denied.value.message and "pw" not in denied.value.message


def test_a_missing_secret_is_not_found() -> None:
    with pytest.raises(NotFound):
        asyncio.run(backend({}).fetch("app", SPEC))
