"""Shared by the AWS rotation tests: the rotator's role, the secret's labels, the RotationPolicy."""

from __future__ import annotations

import datetime
from typing import Any

import kubernetes

from tests.devenv.stack import ISSUER

from .conftest import AwsTenant
from .testbed import MotoTestbed

# What docs/aws.md tells a user to grant the role a RotationPolicy's identity names.
ROTATE_ACTIONS = ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
                  "secretsmanager:UpdateSecretVersionStage", "secretsmanager:ListSecretVersionIds",
                  "secretsmanager:DescribeSecret"]
G, V = "rotor.dev", "v1alpha1"


def rotator(core: kubernetes.client.CoreV1Api, moto: MotoTestbed, tenant: AwsTenant) -> str:
    """ServiceAccount `rotator` and role <namespace>-rotator (may rotate, the app's role may only read);
    the role's name, as a RotationPolicy's identity.role names it."""
    core.create_namespaced_service_account(tenant.namespace, {"metadata": {"name": "rotator"}})
    name = f"{tenant.namespace}-rotator"
    moto.role(name, ROTATE_ACTIONS, namespace=tenant.namespace, service_account="rotator", issuer=ISSUER)
    return name


def labels(moto: MotoTestbed, secret_id: str) -> dict[str, list[str]]:
    """Every version of the secret (retired ones too) and its staging labels, in creation order."""
    listed = moto.admin("secretsmanager").list_secret_version_ids(SecretId=secret_id, IncludeDeprecated=True)
    return {v["VersionId"]: sorted(v.get("VersionStages") or ()) for v in listed["Versions"]}


def labelled(moto: MotoTestbed, secret_id: str) -> list[str]:
    return [v for v, stages in labels(moto, secret_id).items() if stages]


def current(moto: MotoTestbed, secret_id: str, stage: str = "AWSCURRENT") -> dict[str, Any]:
    """The version under STAGE (named: moto answers an unnamed read from its last write, not the label)."""
    answer: dict[str, Any] = moto.admin("secretsmanager").get_secret_value(SecretId=secret_id, VersionStage=stage)
    return answer


def aws_policy(custom: Any, namespace: str, name: str, role: str, spec: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(G, V, namespace, "rotationpolicies", {
        "apiVersion": f"{G}/{V}", "kind": "RotationPolicy", "metadata": {"name": name},
        "spec": {"secretSourceRef": {"name": name}, "schedule": {"interval": "720h"},
                 "identity": {"serviceAccountName": "rotator", "role": role}, **spec}})


def step_time(status: dict[str, Any], phase: str) -> datetime.datetime:
    """When the last rotation entered PHASE (status.rotation.steps)."""
    stamp = next(s["time"] for s in reversed(status["rotation"]["steps"]) if s["phase"] == phase)
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
