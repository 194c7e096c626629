"""Property-based: whatever a field holds, the spec models answer with a ValidationError naming the field,
or accept it, and then nothing Rotor computes from the spec raises (durations, due times, crons, times)."""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel, ValidationError

from rotor.api.common import parse_duration
from rotor.api.kinds import LEAK_INCIDENT, ROTATION_POLICY, SECRET_SOURCE, Kind
from rotor.api.leakincident import LeakIncidentSpec
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.planning import rotation, times
from rotor.planning.schedule import refresh_delay
from tests.unit.api.fuzzing import Case, Path, cases, field_paths, spec_schema

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)

SOURCE_BASES: dict[str, dict[str, Any]] = {
    "vault": {"provider": "vault", "serviceAccountName": "app",
              "vault": {"path": "team/db", "role": "team-app"},
              "data": [{"key": "password", "property": "password"}],
              "target": {"name": "db", "labels": {"a": "b"}, "annotations": {"a": "b"},
                         "template": {"data": {"dsn": "{{ values.password }}"}}},
              "refresh": {"interval": "1h", "jitter": 0.1}},
    "kubernetes": {"provider": "kubernetes", "kubernetes": {"namespace": "team", "name": "src"}},
    "aws": {"provider": "aws", "aws": {"roleArn": "arn:aws:iam::123456789012:role/app",
                                       "secretsManager": {"secretId": "app/db"}}},
}
PARAMETER_STORE = {"provider": "aws", "aws": {"roleArn": "arn:aws:iam::123456789012:role/app",
                                              "parameterStore": {"name": "/app/db"}}}
POLICY_BASE: dict[str, Any] = {
    "secretSourceRef": {"name": "missing"}, "strategy": "overlap", "schedule": {"interval": "720h"},
    "identity": {"serviceAccountName": "rotator", "role": "rotate"},
    "overlap": {"window": "10m", "staticRoles": ["blue", "green"]}, "generator": {"classes": ["lower"]},
}
INCIDENT_BASE: dict[str, Any] = {
    "secretSourceRef": {"name": "missing"}, "exposure": {"where": "git", "detectedAt": "2026-01-01T00:00:00Z"},
    "response": {"identity": {"serviceAccountName": "rotator", "role": "rotate"}, "tightenInterval": "24h"},
}


def source_base(path: Path) -> dict[str, Any]:
    if path[:2] == ("aws", "parameterStore"):
        return PARAMETER_STORE
    return SOURCE_BASES.get(str(path[0]), SOURCE_BASES["vault"])


def policy_base(path: Path) -> dict[str, Any]:
    if path[:2] == ("schedule", "cron"):
        return {**POLICY_BASE, "schedule": {"cron": "0 3 * * 0"}}
    if path[0] == "dynamic":
        return {**POLICY_BASE, "strategy": "dynamic", "dynamic": {"role": "app"}}
    if path[0] == "transit":
        return {**POLICY_BASE, "strategy": "transit", "transit": {"key": "app"}}
    return POLICY_BASE


def incident_base(path: Path) -> dict[str, Any]:
    return INCIDENT_BASE


BASES = {SECRET_SOURCE.kind: source_base, ROTATION_POLICY.kind: policy_base, LEAK_INCIDENT.kind: incident_base}


def _validate(model: type[BaseModel], case: Case) -> BaseModel | None:
    """The model, or None after a ValidationError that names the field; any other exception fails."""
    try:
        return model.model_validate(case.spec)
    except ValidationError as exc:
        text = " ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
        assert case.leaf in text or any(str(p) in text for p in case.path if isinstance(p, str)), (case.field, text)
        return None


def test_the_bases_are_valid() -> None:
    for base in (*SOURCE_BASES.values(), PARAMETER_STORE):
        SecretSourceSpec.model_validate(base)
    for path in (("schedule", "cron"), ("dynamic",), ("transit",), ("x",)):
        RotationPolicySpec.model_validate(policy_base(path))
    LeakIncidentSpec.model_validate(INCIDENT_BASE)


def test_every_field_is_reached() -> None:
    for kind in (SECRET_SOURCE, ROTATION_POLICY, LEAK_INCIDENT):
        paths = {path for path, _ in field_paths(spec_schema(kind))}
        assert len(paths) > 10 and all(isinstance(p[0], str) for p in paths)


def _kind_cases(kind: Kind) -> Any:
    return cases(kind, BASES[kind.kind])


@FUZZ
@given(_kind_cases(SECRET_SOURCE))
def test_secretsource_fields(case: Case) -> None:
    spec = _validate(SecretSourceSpec, case)
    if isinstance(spec, SecretSourceSpec):
        interval = parse_duration(spec.refresh.interval).total_seconds()
        refresh_delay(interval, spec.refresh.jitter, 0.99)


@FUZZ
@given(_kind_cases(ROTATION_POLICY))
def test_rotationpolicy_fields(case: Case) -> None:
    spec = _validate(RotationPolicySpec, case)
    if isinstance(spec, RotationPolicySpec):
        rotation.validate(spec)
        due = rotation.due_at(spec, {}, NOW)
        rotation.due_at(spec, {"lastRotationTime": times.iso(due)}, NOW)
        for text in (spec.deadline, spec.verify.timeout, spec.overlap.window):
            NOW + parse_duration(text) * 2


@FUZZ
@given(_kind_cases(LEAK_INCIDENT))
def test_leakincident_fields(case: Case) -> None:
    spec = _validate(LeakIncidentSpec, case)
    if isinstance(spec, LeakIncidentSpec):
        if spec.exposure.detected_at:
            times.iso(times.parse(spec.exposure.detected_at), millis=True)
        if spec.version is not None:
            int(spec.version)  # what a version store is asked for
        for text in (spec.response.tighten_interval, spec.response.emergency_window):
            if text:
                NOW + parse_duration(text)
