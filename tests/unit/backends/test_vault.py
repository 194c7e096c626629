"""VaultBackend without a server: binding, spec errors, error translation, the audit log it reads itself.
(Everything that talks to Vault runs against the real one: tests/integration/backends/.)"""

from __future__ import annotations

import asyncio
import datetime
import json
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest

from rotor.api.capabilities import Capability
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import (
    Actor,
    AuditLogUnreadable,
    AuditTrail,
    InvalidSpec,
    LeaseIssuer,
    NotFound,
    PermissionDenied,
    StaticCredentials,
    Unavailable,
    VersionStore,
)
from rotor.backends.vault import VaultBackend
from rotor.backends.vault.backend import _status_of, _translate
from rotor.backends.vault.handle import alive_versions, custom_of, text
from rotor.config import VaultConnection

SPEC = SecretSourceSpec.model_validate({"provider": "vault", "serviceAccountName": "app",
                                        "vault": {"path": "app/db", "role": "app"}})
T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


async def _no_token(namespace: str, account: str, audience: str, seconds: int) -> tuple[str, Any]:
    raise AssertionError("no login expected")


def vault(audit_log: Path | None = None) -> VaultBackend:
    return VaultBackend({"default": VaultConnection(address="http://127.0.0.1:9", audit_log_file=audit_log)},
                        _no_token)


def test_bound_handles_have_every_capability_at_the_described_location() -> None:
    backend = vault()
    assert backend.capabilities == frozenset(Capability)
    handle = backend.bind("team", SPEC)
    for protocol in (VersionStore, LeaseIssuer, StaticCredentials, AuditTrail):
        assert isinstance(handle, protocol)
    assert handle.where == backend.describe("team", SPEC) == "vault:default/secret/app/db"
    assert handle.actor == "team/app"
    assert backend.bind("team", SPEC, Actor(service_account="rotator", role="rotate")).actor == "team/rotator"


def test_an_unknown_connection_is_an_invalid_spec_naming_the_known_ones() -> None:
    spec = SecretSourceSpec.model_validate({"provider": "vault", "vault": {"connection": "other", "path": "a",
                                                                           "role": "r"}})
    with pytest.raises(InvalidSpec) as invalid:
        vault().bind("team", spec)
    assert "spec.vault.connection 'other'" in invalid.value.message and "known: default" in invalid.value.message


@pytest.mark.parametrize(("error", "expected"), [
    (hvac.exceptions.InvalidPath, NotFound), (hvac.exceptions.Forbidden, PermissionDenied),
    (hvac.exceptions.Unauthorized, PermissionDenied), (hvac.exceptions.InvalidRequest, InvalidSpec),
    (hvac.exceptions.InternalServerError, Unavailable), (hvac.exceptions.VaultDown, Unavailable),
])
def test_vault_errors_become_backend_errors_with_a_status_reason(error: type[hvac.exceptions.VaultError],
                                                                 expected: type[Exception]) -> None:
    exc = error(errors=["permission denied"])
    translated = _translate(exc, str(_status_of(exc)), "read", "secret/app/db")
    assert type(translated) is expected and "secret/app/db" in translated.message


def _entry(when: str, path: str, *, account: str = "app", error: str | None = None, kind: str = "response",
           operation: str = "read") -> str:
    return json.dumps({"type": kind, "time": when, "error": error,
                       "auth": {"display_name": f"kubernetes-team-{account}", "metadata": {
                           "service_account_name": account, "service_account_namespace": "team", "role": "app"}},
                       "request": {"path": path, "operation": operation, "remote_address": "10.0.0.7"}})


def test_audit_reads_come_from_the_connections_file_audit_log(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text("\n".join([
        _entry("2026-03-01T11:59:00.000000001Z", "secret/data/app/db"),  # before the window
        _entry("2026-03-01T12:00:01.123456789Z", "secret/data/app/db", kind="request"),
        _entry("2026-03-01T12:00:01.123456789Z", "secret/data/app/db"),
        _entry("2026-03-01T12:00:02Z", "secret/metadata/app/db"),
        _entry("2026-03-01T12:00:03Z", "secret/data/app/other"),
        _entry("2026-03-01T12:00:04Z", "secret/data/app/db", operation="update"),
        _entry("2026-03-01T12:00:05Z", "secret/data/app/db", account="intruder", error="permission denied"),
        "not json",
    ]) + "\n")
    handle = vault(log).bind("team", SPEC)
    trail = asyncio.run(handle.audit_reads(T0, None))
    assert trail is not None and trail.total == 2 and trail.source == str(log)
    assert [(r["time"], r["serviceAccount"], r["denied"]) for r in trail.reads] == [
        ("2026-03-01T12:00:01.123Z", "team/app", False), ("2026-03-01T12:00:05.000Z", "team/intruder", True)]
    limited = asyncio.run(handle.audit_reads(T0, T0 + datetime.timedelta(seconds=2), limit=0))
    assert limited is not None and (limited.reads, limited.total) == ([], 1)


def test_an_unreadable_audit_log_is_its_own_error_and_none_configured_is_none(tmp_path: Path) -> None:
    with pytest.raises(AuditLogUnreadable) as unreadable:
        asyncio.run(vault(tmp_path / "missing.log").bind("team", SPEC).audit_reads(T0, None))
    assert "missing.log" in unreadable.value.message
    assert asyncio.run(vault().bind("team", SPEC).audit_reads(T0, None)) is None


def test_metadata_helpers() -> None:
    metadata = {"versions": {"10": {}, "9": {"destroyed": False}, "2": {"destroyed": True}, "11": {}},
                "custom_metadata": {"a": "1", "gone": "", "n": 2}}
    assert alive_versions(metadata) == [9, 10, 11]
    assert alive_versions({}) == [] and custom_of({"custom_metadata": None}) == {}
    assert custom_of(metadata) == {"a": "1", "n": "2"}
    assert (text("plain"), text(5), text({"b": [1], "a": True})) == ("plain", "5", '{"a":true,"b":[1]}')
