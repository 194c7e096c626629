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
    assert any(f"SecretSource {namespace}/db" in line for line in records), "the operator logged the syncs"
    assert not leaks(records, first, second, copied)

    # The running operator's filter knows what its backends fetched: a record carrying one is masked.
    mark = len(operator_logs.lines)
    logging.getLogger("rotor.engines.secretsource.worker").error("would leak %s and %r", second, {"token": copied})
    [line] = [x for x in operator_logs.lines[mark:] if "would leak" in x]
    assert line == f"ERROR rotor.engines.secretsource.worker: would leak {REDACTED} and {{'token': '{REDACTED}'}}"


def test_releasing_a_secret_logs_no_value_with_every_http_logger_at_debug(
        custom: Any, core: Any, vault: hvac.Client, namespace: str, app_identity: str,
        operator_logs: OperatorLogs) -> None:
    """Releasing a Secret on deletion (deletionPolicy Retain) reads it whole and writes it back; with the
    HTTP client's loggers (aiohttp, which carries every Kubernetes and Vault request) turned up to DEBUG,
    no record holds its value, and the value stays in the Secret."""
    canary = f"log-canary-body-{uuid.uuid4().hex}"
    loggers = [logging.getLogger(name) for name in ("aiohttp", "aiohttp.client", "aiohttp.internal", "asyncio")]
    previous = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.DEBUG)
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
        for each, level in zip(loggers, previous, strict=True):
            each.setLevel(level)
    assert records, "the operator logged the sync and the release"
    assert secret_data(core, namespace, "api") == {"key": canary.encode()}  # retained, value intact
    assert not leaks(records, canary)
