"""VaultBackend remembers a denial for its backoff: a denied identity costs no token request, login or
read until then (the server side is faked at VaultBackend._call; the real server: tests/integration)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import PermissionDenied
from rotor.backends.vault import VaultBackend
from rotor.config import VaultConnection

SPEC = SecretSourceSpec.model_validate({"provider": "vault", "serviceAccountName": "app",
                                        "vault": {"path": "app/db", "role": "app", "kvVersion": "2"}})
READ_DENIED = "Vault denied read secret/app/db (403): permission denied"


class FakeVault:
    """Counts token requests and Vault calls; denies logins or reads as told."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []
        self.deny_login = False
        self.deny_read = False

    async def request_token(self, namespace: str, account: str, audience: str, seconds: int) -> tuple[str, Any]:
        self.calls.append("token-request")
        return "jwt", None

    async def call(self, conn: Any, operation: str, fn: Callable[..., Any], *, token: str | None = None,
                   where: str = "", direct: Callable[[], Any] | None = None) -> Any:
        self.calls.append(operation)
        if operation == "login":
            if self.deny_login:
                raise PermissionDenied("Vault denied login (403): permission denied")
            return {"auth": {"client_token": "s.token", "lease_duration": 3600}}
        if operation == "read":
            if self.deny_read:
                raise PermissionDenied(READ_DENIED)
            return {"data": {"data": {"password": "pw"}, "metadata": {"version": 3}}}
        return {}

    def backend(self) -> VaultBackend:
        backend = VaultBackend({"default": VaultConnection(address="http://127.0.0.1:9")}, self.request_token,
                               clock=lambda: self.now)
        backend._call = self.call  # type: ignore[method-assign]
        return backend


def _denied(backend: VaultBackend) -> str:
    with pytest.raises(PermissionDenied) as caught:
        asyncio.run(backend.fetch("team", SPEC))
    return caught.value.message


def test_a_denied_read_is_remembered_for_its_backoff_then_tried_again() -> None:
    vault = FakeVault()
    vault.deny_read = True
    backend = vault.backend()
    assert _denied(backend) == READ_DENIED
    assert vault.calls == ["token-request", "login", "read"]
    for _ in range(5):  # refresh-now loops, other sources of the same identity and path: all answered at once
        assert _denied(backend) == READ_DENIED, "the same error, so the status does not change"
    assert vault.calls == ["token-request", "login", "read"]
    vault.now = 2.5  # the first backoff (2 s) is over: one real attempt (the cached token, then a fresh one)
    vault.calls.clear()
    assert _denied(backend) == READ_DENIED
    assert vault.calls == ["read", "token-request", "login", "read"]
    vault.now = 5.0  # denied again: remembered twice as long (4 s, until 6.5)
    vault.calls.clear()
    _denied(backend)
    assert vault.calls == []
    vault.now = 7.0
    vault.deny_read = False  # the policy was fixed
    assert asyncio.run(backend.fetch("team", SPEC)).version == "3"
    vault.calls.clear()
    vault.deny_read = True
    _denied(backend)  # a success forgot the denials: the next one starts at the shortest backoff again
    vault.now = 7.0 + 2.5
    vault.calls.clear()
    _denied(backend)
    assert vault.calls.count("login") == 1


def test_a_refused_login_is_remembered_for_the_identity_whatever_it_asks() -> None:
    vault = FakeVault()
    vault.deny_login = True
    backend = vault.backend()
    first = _denied(backend)
    assert "login as ServiceAccount team/app" in first and vault.calls == ["token-request", "login"]
    other_path = SecretSourceSpec.model_validate({"provider": "vault", "serviceAccountName": "app",
                                                 "vault": {"path": "app/other", "role": "app", "kvVersion": "2"}})
    with pytest.raises(PermissionDenied):
        asyncio.run(backend.fetch("team", other_path))
    with pytest.raises(PermissionDenied):  # the rotation side (VersionStore) too
        asyncio.run(backend.bind("team", SPEC).read_version())
    assert vault.calls == ["token-request", "login"], "no token request or login until the backoff is over"
    vault.now = 2.5
    vault.deny_login = False
    assert asyncio.run(backend.fetch("team", SPEC)).version == "3"
    assert vault.calls == ["token-request", "login", "token-request", "login", "read"]


def test_denials_are_per_identity() -> None:
    vault = FakeVault()
    vault.deny_read = True
    backend = vault.backend()
    _denied(backend)
    vault.deny_read = False
    other = SecretSourceSpec.model_validate({"provider": "vault", "serviceAccountName": "other",
                                            "vault": {"path": "app/db", "role": "app", "kvVersion": "2"}})
    assert asyncio.run(backend.fetch("team", other)).version == "3"
