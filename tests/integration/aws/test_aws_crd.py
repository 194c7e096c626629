"""spec.aws as the real API server validates it (the CRD's CEL rules and patterns), before Rotor sees it."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

ROLE = "arn:aws:iam::123456789012:role/team-a-app"


def create(custom: Any, namespace: str, spec: dict[str, Any], name: str = "x") -> Any:
    body = {"apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource", "metadata": {"name": name}, "spec": spec}
    return custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources", body,
                                                  field_validation="Strict")


def test_a_good_aws_source_is_accepted_and_defaulted(custom: Any, namespace: str) -> None:
    made = create(custom, namespace, {"provider": "aws", "aws": {
        "roleArn": ROLE, "secretsManager": {"secretId": "prod/app/db"}}})
    assert made["spec"]["aws"]["connection"] == "default"
    assert made["spec"]["aws"]["secretsManager"]["format"] == "JSON"
    create(custom, namespace, {"provider": "aws", "aws": {"roleArn": ROLE, "parameterStore": {"path": "/p/"}}},
           name="path")


@pytest.mark.parametrize(("spec", "says"), [
    ({"provider": "aws"}, "provider aws needs spec.aws"),
    ({"provider": "aws", "aws": {"roleArn": ROLE}}, "set exactly one of secretsManager and parameterStore"),
    ({"provider": "aws", "aws": {"roleArn": ROLE, "secretsManager": {"secretId": "s"},
                                 "parameterStore": {"name": "/p"}}}, "set exactly one of secretsManager"),
    ({"provider": "aws", "aws": {"roleArn": ROLE, "secretsManager": {
        "secretId": "s", "versionStage": "AWSCURRENT", "versionId": "0" * 32}}}, "not both"),
    ({"provider": "aws", "aws": {"roleArn": ROLE, "parameterStore": {}}}, "set exactly one of name and path"),
    ({"provider": "aws", "aws": {"roleArn": ROLE, "parameterStore": {"path": "/p/", "version": 2}}},
     "version pins need name"),
    ({"provider": "aws", "aws": {"roleArn": "arn:aws:iam::1:role/x", "secretsManager": {"secretId": "s"}}},
     "roleArn"),
    ({"provider": "vault", "vault": {"path": "a", "role": "r"},
      "aws": {"roleArn": ROLE, "secretsManager": {"secretId": "s"}}}, "set only one of spec.vault"),
    ({"provider": "aws", "aws": {"roleArn": ROLE, "secretsManager": {"secretId": "s"},
                                 "endpointUrl": "https://attacker.example"}}, "endpointUrl"),
])
def test_bad_aws_sources_are_refused_naming_the_rule(custom: Any, namespace: str, spec: dict[str, Any],
                                                     says: str) -> None:
    with pytest.raises(kubernetes.client.ApiException) as caught:
        create(custom, namespace, spec)
    assert caught.value.status in (400, 422)
    assert says in str(json.loads(caught.value.body)["message"])
