"""The masking registry: only values that could identify a credential are masked, per value, and one
value (however many lines it has) never flushes the others."""

from __future__ import annotations

import base64
import secrets
import string

import pytest

from rotor.observability import secrecy
from rotor.observability.secrecy import (
    MAX_LINES_PER_VALUE,
    REDACTED,
    Registry,
    identifies_credential,
    remember,
)

PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       "VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDu\n-----END PRIVATE KEY-----\n")
COMMON = ["postgres", "true", "false", "5432", "8080", "localhost", "localhost:5432", "v1alpha1", "kube-system",
          "team-b-prod", "postgres-0", "db-1.example.com", "https://vault.vault.svc:8200", "Password1",
          "SecretSourceController", "app.kubernetes.io/managed-by", "2024-01-01T00:00:00Z", "aaaaaaaaaaaa",
          "1712345678901234", "the quick brown fox jumps over the lazy dog", " postgres\n"]
CREDENTIALS = ["hunter2!", "x7k2m9q4p1z8", "Tr0ub4dor&3", "xKZqPmwTbLrd", "abcdef.0123456789abcdef",
               "postgresql://app:S3cr3tPw@db:5432/app", "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
               "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7", "QwErTyUiOpAsDfGhJkLzXcVb"]


@pytest.mark.parametrize("value", COMMON)
def test_short_and_common_values_never_identify_a_credential(value: str) -> None:
    assert not identifies_credential(value)
    registry = Registry()
    registry.remember([value.encode()])
    assert len(registry) == 0
    line = f"connecting to {value} as {value}"
    assert registry.mask(line) == line


@pytest.mark.parametrize("value", CREDENTIALS)
def test_real_credentials_are_masked(value: str) -> None:
    assert identifies_credential(value)
    registry = Registry()
    registry.remember([value.encode()])
    assert registry.mask(f"password={value};") == f"password={REDACTED};"
    assert registry.contains(base64.b64encode(value.encode()).decode())


def test_generated_passwords_qualify_and_binary_values_mask_in_base64() -> None:
    alphabet = string.ascii_letters + string.digits
    generated = ["".join(secrets.choice(alphabet) for _ in range(16)) for _ in range(200)]
    assert sum(map(identifies_credential, generated)) >= 195
    assert all(identifies_credential(secrets.token_urlsafe(24)) for _ in range(50))
    registry = Registry()
    registry.remember([b"\xff\xfe\x00binary-key"])
    assert registry.mask(base64.b64encode(b"\xff\xfe\x00binary-key").decode()) == REDACTED


def test_one_tenants_postgres_never_redacts_another_tenants_line() -> None:
    registry = Registry()
    registry.remember([b"postgres", b"5432", b"true", b"x7k2m9q4p1z8"])  # tenant A's Secret
    line = "team-b/db: connecting to postgres on port 5432 as postgres (ssl=true)"  # tenant B's log line
    assert registry.mask(line) == line
    assert registry.mask("team-a/db: password x7k2m9q4p1z8") == f"team-a/db: password {REDACTED}"


def test_multi_line_values_contribute_their_long_lines_but_not_their_headers() -> None:
    registry = Registry()
    registry.remember([PEM.encode()])
    assert registry.mask(PEM.splitlines()[1]) == REDACTED
    assert registry.mask("-----BEGIN PRIVATE KEY-----") == "-----BEGIN PRIVATE KEY-----"


def test_the_longest_value_wins_and_adjacent_values_are_both_redacted() -> None:
    registry = Registry()
    registry.remember([b"Xk9#mPq2", b"Xk9#mPq2-rTz7!wb"])
    assert registry.mask("a Xk9#mPq2-rTz7!wb b") == f"a {REDACTED} b"
    assert registry.mask("Xk9#mPq2Xk9#mPq2") == REDACTED * 2


def test_registry_is_bounded_least_recently_fetched_value_forgotten_first() -> None:
    registry = Registry(capacity=4)  # each value below has two forms: text and base64
    registry.remember([b"first-x7k2m9"])
    registry.remember([b"second-x7k2m9"])
    registry.remember([b"first-x7k2m9"])  # fetched again: now the most recent
    registry.remember([b"third-x7k2m9"])
    assert len(registry) == 4
    assert registry.contains("third-x7k2m9") and registry.contains("first-x7k2m9")
    assert not registry.contains("second-x7k2m9")


def test_a_ten_thousand_line_value_does_not_evict_the_rest() -> None:
    registry = Registry(capacity=200)
    victims = [f"tenant-{n}-Xk9#{secrets.token_hex(8)}" for n in range(50)]  # 100 forms
    registry.remember(v.encode() for v in victims)
    flood = "\n".join(secrets.token_urlsafe(30) for _ in range(10_000))
    registry.remember([flood.encode()])
    assert all(registry.contains(v) for v in victims), "a victim's value was flushed"
    assert len(registry) <= 100 + 5 + MAX_LINES_PER_VALUE
    assert registry.contains(flood.splitlines()[0]) and not registry.contains(flood.splitlines()[-1])


def test_a_form_two_values_share_stays_until_both_are_forgotten() -> None:
    shared = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    registry = Registry(capacity=13)
    registry.remember([f"header-one\n{shared}\n".encode()])
    registry.remember([f"header-two\n{shared}\n".encode()])
    registry.remember([b"Xk9#mPq2-rTz7!wb"])  # evicts the first value, not the line it shares
    assert registry.contains(shared)


def test_registry_keeps_no_value_in_memory() -> None:
    registry = Registry()
    value = "canary-7f3a9c1e-do-not-log"
    registry.remember([value.encode()])
    state = repr(vars(registry))
    assert value not in state and base64.b64encode(value.encode()).decode() not in state


def test_backends_remember_through_the_module_registry() -> None:
    data = {"password": b"module-level-canary-7f3a9c1e"}
    assert remember(data) is data  # backends wrap their fetched dict in place
    assert secrecy.REGISTRY.contains("password=module-level-canary-7f3a9c1e")
    assert secrecy.mask("status: module-level-canary-7f3a9c1e") == f"status: {REDACTED}"
