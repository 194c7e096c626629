"""Bad manifests are refused by the real API server, with a message that names the field."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

GOOD: dict[str, Any] = {
    "provider": "vault",
    "serviceAccountName": "app",
    "vault": {"path": "app/db", "role": "app"},
}


def _create(custom: Any, namespace: str, spec: dict[str, Any], plural: str = "secretsources",
            kind: str = "SecretSource") -> Any:
    body = {"apiVersion": "rotor.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    # kubectl validates strictly by default; so does this (unknown fields are errors, not dropped).
    return custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, plural, body,
                                                  field_validation="Strict")


def _rejection(custom: Any, namespace: str, spec: dict[str, Any], **kw: Any) -> str:
    with pytest.raises(kubernetes.client.ApiException) as caught:
        _create(custom, namespace, spec, **kw)
    assert caught.value.status in (400, 422)
    return str(json.loads(caught.value.body)["message"])


def test_a_good_manifest_is_accepted_and_defaulted(custom: Any, namespace: str) -> None:
    created = _create(custom, namespace, GOOD)
    assert created["spec"]["refresh"] == {"interval": "1h", "jitter": 0.1}
    assert created["spec"]["target"]["creationPolicy"] == "Owner"
    assert created["spec"]["vault"]["mount"] == "secret"
    assert created["spec"]["vault"]["kvVersion"] == "auto"


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ({**GOOD, "vualt": {}}, ['unknown field "spec.vualt"']),
        ({**GOOD, "vault": {**GOOD["vault"], "version": "three"}}, ["spec.vault.version", "integer"]),
        ({"vault": GOOD["vault"]}, ["spec.provider", "Required value"]),
        ({**GOOD, "refresh": {"interval": "an hour"}}, ["spec.refresh.interval", "should match"]),
        ({**GOOD, "provider": "vualt"}, ["spec.provider", 'Unsupported value: "vualt"']),
        ({**GOOD, "target": {"creationPolicy": "Own"}}, ["spec.target.creationPolicy", "Unsupported value"]),
        ({"provider": "vault", "serviceAccountName": "app"}, ["spec.vault", "provider vault needs spec.vault"]),
        ({**GOOD, "refresh": {"jitter": 2}}, ["spec.refresh.jitter", "less than or equal to"]),
    ],
    ids=["unknown-field", "wrong-type", "missing-required", "bad-duration", "enum-typo", "nested-enum", "cel",
         "bounds"],
)
def test_bad_secretsource_is_rejected_naming_the_field(custom: Any, namespace: str, spec: dict[str, Any],
                                                       names: list[str]) -> None:
    message = _rejection(custom, namespace, spec)
    for name in names:
        assert name in message, message


def test_bad_rotationpolicy_is_rejected(custom: Any, namespace: str) -> None:
    base = {"secretSourceRef": {"name": "db"}, "strategy": "overlap", "schedule": {"interval": "720h"}}
    both = _rejection(custom, namespace, {**base, "schedule": {"interval": "1h", "cron": "0 3 * * *"}},
                      plural="rotationpolicies", kind="RotationPolicy")
    assert "exactly one of schedule.interval and schedule.cron" in both
    typo = _rejection(custom, namespace, {**base, "strategy": "overlapp"}, plural="rotationpolicies",
                      kind="RotationPolicy")
    assert "spec.strategy" in typo


def test_bad_leakincident_is_rejected(custom: Any, namespace: str) -> None:
    typo = _rejection(custom, namespace, {"secretSourceRef": {"name": "db"}, "exposure": {"where": "slack"}},
                      plural="leakincidents", kind="LeakIncident")
    assert "spec.exposure.where" in typo and 'Unsupported value: "slack"' in typo
    # CEL rules run only once the schema checks pass (the API server says so), hence a second manifest.
    unnamed = _rejection(custom, namespace, {"exposure": {"where": "git"}}, plural="leakincidents",
                         kind="LeakIncident")
    assert "set secretSourceRef or targetSecretRef" in unnamed
