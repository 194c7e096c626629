"""No secret value reaches a log record, with the operator logging at DEBUG while it syncs canary
values from Vault and from another namespace; and the masking filter the running operator
installed redacts any value it fetched, even from records that would otherwise carry it."""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

import hvac
import pytest

from rotor.observability.secrecy import REDACTED

from .conftest import OperatorLogs, secret_data, secret_source, wait_for, wait_ready

pytestmark = pytest.mark.usefixtures("operator")


def leaks(lines: list[str], *values: str) -> list[str]:
    forms = {f for v in values for f in (v, base64.b64encode(v.encode()).decode())}
    return [line for line in lines if any(f in line for f in forms)]


def test_canary_values_never_reach_a_log_record(custom: Any, core: Any, vault: hvac.Client, namespace: str,
                                                app_identity: str, operator_logs: OperatorLogs) -> None:
    first, second, copied = (f"log-canary-{n}-{uuid.uuid4().hex}" for n in ("v1", "v2", "copy"))
    start = len(operator_logs.lines)
    assert logging.getLogger("rotor").isEnabledFor(logging.DEBUG)
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": first}, mount_point="secret")
    secret_source(custom, namespace, "db", {"provider": "vault", "serviceAccountName": "app",
                                            "vault": {"path": f"{namespace}/db", "role": app_identity},
                                            "refresh": {"interval": "2s", "jitter": 0}})
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "upstream", "annotations": {"rotor.dev/allowed-namespaces": namespace}},
        "stringData": {"token": copied}})
    secret_source(custom, namespace, "copy", {"provider": "kubernetes",
                                              "kubernetes": {"namespace": namespace, "name": "upstream"}})
    wait_ready(custom, namespace, "db")
    wait_ready(custom, namespace, "copy")
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": second}, mount_point="secret")
    wait_for(lambda: secret_data(core, namespace, "db") == {"password": second.encode()}, what="rotated value")

    records = operator_logs.lines[start:]
    assert len(records) > 10, "the operator logged at DEBUG during the syncs"
    assert not leaks(records, first, second, copied)

    # The running operator's filter knows what its backends fetched: a record carrying one is masked.
    mark = len(operator_logs.lines)
    logging.getLogger("rotor.engines.secretsource.worker").error("would leak %s and %r", second, {"token": copied})
    [line] = [x for x in operator_logs.lines[mark:] if "would leak" in x]
    assert line == f"ERROR rotor.engines.secretsource.worker: would leak {REDACTED} and {{'token': '{REDACTED}'}}"


def test_response_bodies_with_values_are_masked_if_client_debug_is_turned_on(
        custom: Any, core: Any, vault: hvac.Client, namespace: str, app_identity: str,
        operator_logs: OperatorLogs) -> None:
    """Rotor silences the Kubernetes client's DEBUG body logging; if someone turns it back on, a Secret
    body the client logs (base64 of values fetched from Vault) is still redacted. Syncs send plain JSON
    that the client never logs; releasing a Secret on deletion (deletionPolicy Retain) still goes through
    the client's models, whose response body it logs."""
    canary = f"log-canary-body-{uuid.uuid4().hex}"
    rest = logging.getLogger("kubernetes.client.rest")
    previous = rest.level
    rest.setLevel(logging.DEBUG)
    try:
        start = len(operator_logs.lines)
        vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/api", {"key": canary}, mount_point="secret")
        secret_source(custom, namespace, "api", {"provider": "vault", "serviceAccountName": "app",
                                                 "vault": {"path": f"{namespace}/api", "role": app_identity},
                                                 "target": {"deletionPolicy": "Retain"}})
        wait_ready(custom, namespace, "api")
        custom.delete_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources", "api")
        wait_for(lambda: not core.read_namespaced_secret("api", namespace).metadata.owner_references,
                 what="the retained Secret released")
        records = operator_logs.lines[start:]
    finally:
        rest.setLevel(previous)
    bodies = [line for line in records if line.startswith("DEBUG kubernetes.client.rest: response body")
              and f'"name":"api","namespace":"{namespace}"' in line and '"kind":"Secret"' in line]
    assert bodies, "the client logged the released Secret's body"
    assert all(REDACTED in line for line in bodies)
    assert secret_data(core, namespace, "api") == {"key": canary.encode()}  # retained, value intact
    assert not leaks(records, canary)
