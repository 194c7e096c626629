"""The canary scan: secret values planted in Vault never appear in anything Rotor emits.

Drives the paths that handle values (first sync, update, template rendering, a template error,
drift restore, a denied read), then scans what an operator, an SRE or an attacker can see: every
log record the operator wrote at DEBUG, every Event, the SecretSource objects (status, annotations,
managedFields), the managed Secret's metadata and the Prometheus exposition.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import hvac
import pytest
from prometheus_client import generate_latest

from rotor.observability.metrics import REGISTRY

from .conftest import OperatorLogs, secret_data, secret_source, wait_for, wait_ready

pytestmark = pytest.mark.usefixtures("operator")


def test_planted_canaries_never_leave_memory_and_the_target_secret(
        custom: Any, core: Any, vault: hvac.Client, namespace: str, app_identity: str,
        operator_logs: OperatorLogs) -> None:
    first, second = f"canary-{uuid.uuid4().hex}", f"canary-{uuid.uuid4().hex}"
    path = f"{namespace}/db"
    vault.secrets.kv.v2.create_or_update_secret(path, {"password": first, "user": "svc"}, mount_point="secret")
    spec = {"provider": "vault", "serviceAccountName": "app", "refresh": {"interval": "1s", "jitter": 0},
            "vault": {"path": path, "role": app_identity},
            "target": {"template": {"data": {"dsn": "postgres://{{ values.user }}:{{ values.password }}@db"}}}}
    secret_source(custom, namespace, "db", spec)
    wait_ready(custom, namespace, "db")
    vault.secrets.kv.v2.create_or_update_secret(path, {"password": second, "user": "svc"}, mount_point="secret")
    wait_for(lambda: (secret_data(core, namespace, "db") or {}).get("password") == second.encode())
    # Drift: someone writes a value by hand; Rotor restores it.
    core.patch_namespaced_secret("db", namespace, {"data": {"password": base64.b64encode(b"x").decode()}})
    wait_for(lambda: (secret_data(core, namespace, "db") or {}).get("password") == second.encode())
    # A template that fails on the value itself (its exception text would quote the value).
    secret_source(custom, namespace, "broken", {**spec, "target": {"template": {"data": {
        "x": "{{ values.password | b64decode }}"}}}})
    wait_ready(custom, namespace, "broken", "False", "TemplateError")
    failed = f"sync of SecretSource {namespace}/broken failed"
    wait_for(lambda: sum(failed in line for line in operator_logs.lines) >= 2, what="the broken template retried")

    canaries = [first, second] + [base64.b64encode(c.encode()).decode() for c in (first, second)]
    emitted = {
        "logs": "\n".join(operator_logs.lines),
        "events": json.dumps([e.to_dict() for e in core.list_namespaced_event(namespace).items], default=str),
        "secretsources": json.dumps(custom.list_namespaced_custom_object(
            "rotor.dev", "v1alpha1", namespace, "secretsources"), default=str),
        "secret metadata": json.dumps(core.read_namespaced_secret("db", namespace).metadata.to_dict(), default=str),
        "metrics": generate_latest(REGISTRY).decode(),
    }
    assert len(emitted["logs"]) > 1000, "the operator's logs were not captured"
    for where, text in emitted.items():
        for canary in canaries:
            assert canary not in text, f"a secret value leaked into {where}"
    assert (secret_data(core, namespace, "db") or {})["password"] == second.encode()
