"""Every field a tenant writes is bounded in the schema, and the inputs that crashed Rotor are refused
at admission or by the model, naming the field and the fix."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from rotor.api.common import _SECOND_OR_MORE, DURATION_PATTERN, MAX_DURATION, MIN_DURATION, parse_duration
from rotor.api.kinds import KINDS
from rotor.api.leakincident import LeakIncidentSpec
from rotor.api.rotationpolicy import RotationPolicySpec, check_cron
from rotor.api.secretsource import SecretSourceSpec
from tests.unit.api.fuzzing import field_paths, spec_schema

_UNBOUNDED = re.compile(r"[+*]|\{[0-9]+,\}")
KNOWN_UNBOUNDED: set[str] = set()  # fields allowed to stay unbounded, each with its reason


def _unbounded(node: Mapping[str, Any]) -> str | None:
    kind = node.get("type")
    if kind == "string" and "maxLength" not in node and "enum" not in node and (
            "pattern" not in node or _UNBOUNDED.search(node["pattern"])):
        return "string without maxLength"
    if kind == "array" and "maxItems" not in node:
        return "list without maxItems"
    if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
        return "map without maxProperties"
    if kind in ("integer", "number") and "maximum" not in node:
        return "number without maximum"
    return None


def test_every_spec_field_is_bounded() -> None:
    found = []
    for kind in KINDS:
        for path, node in field_paths(spec_schema(kind)):
            name = f"{kind.kind} spec." + ".".join(str(p) for p in path if not isinstance(p, int))
            why = _unbounded(node)
            if why and name not in KNOWN_UNBOUNDED:
                found.append(f"{name}: {why}")
    assert found == []


SOURCE = {"provider": "vault", "serviceAccountName": "app", "vault": {"path": "team/db", "role": "app"}}
POLICY = {"secretSourceRef": {"name": "db"}, "strategy": "overlap", "schedule": {"interval": "720h"}}
INCIDENT = {"secretSourceRef": {"name": "db"}, "exposure": {"where": "git"}}


def _error(model: Any, raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(raw)
    return " ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in caught.value.errors(include_input=False))


@pytest.mark.parametrize(("interval", "words"), [
    ("1000000000d", ["schedule.interval", "pattern"]),  # overflowed inside validation
    ("100000000d", ["schedule.interval", "pattern"]),  # overflowed computing the next time
    ("99999d", ["schedule.interval", "longer than 3660d", "at most 3660d"]),
    ("0s", ["schedule.interval", "shorter than 1s", "1s or more"]),
    ("500ms", ["schedule.interval", "shorter than 1s"]),
])
def test_durations_out_of_range_name_the_field_and_the_fix(interval: str, words: list[str]) -> None:
    message = _error(RotationPolicySpec, {**POLICY, "schedule": {"interval": interval}})
    for word in words:
        assert word in message, message


def test_durations_within_range() -> None:
    for text in ("1s", "1000ms", "0.5m", "1h30m", "3660d", "99999s"):
        assert MIN_DURATION <= parse_duration(text) <= MAX_DURATION
    with pytest.raises(ValueError, match="at most 5 digits"):
        parse_duration("100000s")


@pytest.mark.parametrize("text", ["0s", "0m", "0.5s", "999ms", "00000ms", "0.0s0ms"])
def test_the_api_servers_minimum_refuses_what_is_under_a_second(text: str) -> None:
    assert re.fullmatch(DURATION_PATTERN, text)
    assert not re.search(_SECOND_OR_MORE, text), text


@pytest.mark.parametrize("text", ["1s", "1000ms", "10s", "01s", "1m", "1h", "1d", "0.5m", "0.1h", "1ms1s",
                                  "90s", "1h30m", "1.5s", "2000ms"])
def test_the_api_servers_minimum_admits_a_second_or_more(text: str) -> None:
    assert re.search(_SECOND_OR_MORE, text), text
    parse_duration(text)


def test_a_cron_that_never_fires_is_refused() -> None:
    assert check_cron("0 3 * * 0") is None and check_cron("0 0 29 2 *") is None  # every leap year fires
    assert "never fires" in (check_cron("0 0 30 2 *") or "")
    assert "not a valid five-field" in (check_cron("61 * * * *") or "")
    message = _error(RotationPolicySpec, {**POLICY, "schedule": {"cron": "0 0 30 2 *"}})
    assert "schedule.cron" in message and "February 30th" in message and "e.g." in message


def test_a_schedule_needs_exactly_one_of_interval_and_cron() -> None:
    assert "exactly one" in _error(RotationPolicySpec, {**POLICY, "schedule": {}})
    assert "exactly one" in _error(RotationPolicySpec, {**POLICY, "schedule": {"interval": "1h",
                                                                               "cron": "0 3 * * 0"}})


def test_static_roles_are_two_different_roles() -> None:
    same = _error(RotationPolicySpec, {**POLICY, "overlap": {"staticRoles": ["a", "a"]}})
    assert "overlap.staticRoles" in same and "two different roles" in same
    assert "exactly two" in _error(RotationPolicySpec, {**POLICY, "overlap": {"staticRoles": ["a"]}})
    RotationPolicySpec.model_validate({**POLICY, "overlap": {"staticRoles": ["blue", "green"]}})


@pytest.mark.parametrize(("field", "value"), [
    ("mount", ".."), ("mount", "database/../sys"), ("path", "team/../other"), ("role", ".."),
    ("authMount", "kubernetes/."), ("audience", "a b"), ("audience", "vault\n"), ("version", 2**31),
])
def test_names_that_go_into_vault_urls_are_checked(field: str, value: Any) -> None:
    message = _error(SecretSourceSpec, {**SOURCE, "vault": {**SOURCE["vault"], field: value}})
    assert f"vault.{field}" in message


@pytest.mark.parametrize(("where", "value"), [
    (("identity", "role"), "../x"), (("identity", "serviceAccountName"), "Not_A_Name"),
    (("dynamic", "role"), ".."), (("dynamic", "mount"), "a//b"), (("overlap", "mount"), "../sys"),
])
def test_rotation_names_are_checked(where: tuple[str, str], value: str) -> None:
    parent = {"identity": {"serviceAccountName": "rotator", "role": "rotate"}, "dynamic": {"role": "app"},
              "overlap": {}}[where[0]]
    raw: dict[str, Any] = {**POLICY, where[0]: {**parent, where[1]: value}}
    if where[0] == "dynamic":
        raw["strategy"] = "dynamic"
    assert ".".join(where) in _error(RotationPolicySpec, raw)


@pytest.mark.parametrize("version", ["abc", "0", "-1", "1" * 19, "3.0"])
def test_an_incident_version_is_a_version_number(version: str) -> None:
    assert "version" in _error(LeakIncidentSpec, {**INCIDENT, "version": version})
    LeakIncidentSpec.model_validate({**INCIDENT, "version": "3"})


@pytest.mark.parametrize(("detected", "words"), [
    ("yesterday", "RFC 3339"), ("2026-02-30T00:00:00Z", "exists"), ("0001-01-01T00:00:00+01:00", "exists"),
    ("1969-12-31T23:59:59Z", "1970 and 2999"),
])
def test_an_incident_detection_time_is_a_usable_time(detected: str, words: str) -> None:
    message = _error(LeakIncidentSpec, {**INCIDENT, "exposure": {"where": "git", "detectedAt": detected}})
    assert "exposure.detectedAt" in message and words in message
    LeakIncidentSpec.model_validate({**INCIDENT, "exposure": {"where": "git",
                                                              "detectedAt": "2026-01-01T00:00:00.123456789+02:00"}})
