"""Token audiences a tenant may ask Rotor to mint are allow-listed per Vault connection, and the API
server's own audience never is: such a token would let the backend act as the tenant's ServiceAccount
in the cluster. The check is made before any TokenRequest (the Vault server side never sees it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import InvalidSpec
from rotor.backends.vault import VaultBackend
from rotor.config import VaultConnection


def _spec(audience: str) -> SecretSourceSpec:
    return SecretSourceSpec.model_validate({"provider": "vault", "serviceAccountName": "app",
                                            "vault": {"path": "app/db", "role": "app", "audience": audience}})


def _backend(minted: list[str], **connection: Any) -> VaultBackend:
    async def request_token(namespace: str, account: str, audience: str, seconds: int) -> tuple[str, Any]:
        minted.append(audience)
        raise AssertionError("no token may be requested for a refused audience")

    return VaultBackend({"default": VaultConnection(address="http://127.0.0.1:9", **connection)}, request_token)


@pytest.mark.parametrize("audience", ["https://kubernetes.default.svc.cluster.local", "kubernetes", "not-listed"])
def test_an_audience_the_connection_does_not_allow_mints_no_token(audience: str) -> None:
    minted: list[str] = []
    backend = _backend(minted)
    with pytest.raises(InvalidSpec) as refused:
        asyncio.run(backend.fetch("team-a", _spec(audience)))
    assert "spec.vault.audience" in refused.value.message and "allowed: vault" in refused.value.message
    with pytest.raises(InvalidSpec):
        backend.bind("team-a", _spec(audience))
    assert minted == []


def test_the_operator_may_allow_other_audiences_but_never_the_api_servers() -> None:
    minted: list[str] = []
    backend = _backend(minted, allowed_audiences=("vault", "vault.internal"))
    assert backend.bind("team-a", _spec("vault.internal")).where.endswith("secret/app/db")
    with pytest.raises(pydantic.ValidationError, match="API server's own audience"):
        VaultConnection(address="http://127.0.0.1:9", allowed_audiences=("vault", "https://kubernetes.default.svc"))
