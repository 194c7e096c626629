"""What only the Vault backend does, against the stack's Vault: its token cache and login retries."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import hvac
import pytest

from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import PermissionDenied
from rotor.backends.vault import Identity, VaultBackend
from rotor.config import VaultConnection
from rotor.observability.metrics import REGISTRY
from tests.devenv import Stack

from .vault_subject import VaultSubject


def _identity(s: VaultSubject, account: str = "app", role: str = "") -> Identity:
    return Identity("default", s.namespace, account, role or f"{s.namespace}-{account}", "kubernetes", "vault")


def test_a_revoked_cached_token_gets_one_fresh_login(subject: VaultSubject, vault: hvac.Client) -> None:
    s, me = subject, _identity(subject)
    assert isinstance(s.backend, VaultBackend)
    backend: VaultBackend = s.backend
    s.put("db", {"password": "one"})
    handle = backend.bind(s.namespace, s.spec("db"))

    async def main() -> None:
        await handle.read_version()
        first = backend._tokens[me].token
        vault.auth.token.revoke(first)
        assert await handle.read_version() == ({"password": "one"}, "1")
        assert backend._tokens[me].token != first

    asyncio.run(main())


def test_a_denied_fresh_login_is_not_tried_again(stack: Stack, subject: VaultSubject) -> None:
    """A token just issued and refused is a real denial: no second login (each costs a TokenRequest)."""
    s = subject
    name = f"c{uuid.uuid4().hex[:8]}"  # a connection of its own: the metric counts only this test's logins

    async def request_token(namespace: str, account: str, audience: str, seconds: int) -> tuple[str, Any]:
        return await asyncio.to_thread(stack.service_account_token, namespace, account, audience, seconds), None

    backend = VaultBackend({name: VaultConnection(address=stack.info.vault_addr)}, request_token)
    spec = SecretSourceSpec.model_validate({"provider": "vault", "serviceAccountName": "nobody", "vault": {
        "connection": name, "path": s.path("db"), "role": f"{s.namespace}-nobody"}})
    s.put("db", {"password": "one"})

    async def main() -> None:
        with pytest.raises(PermissionDenied):
            await backend.bind(s.namespace, spec).read_version()
        await backend.close()

    asyncio.run(main())
    assert REGISTRY.get_sample_value("rotor_backend_logins_total", {"backend": name, "result": "ok"}) == 1
