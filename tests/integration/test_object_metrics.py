"""Per-object metrics (metrics_secret_names) scraped from a running Rotor's /metrics endpoint."""

from __future__ import annotations

import socket
import time
import urllib.request
from typing import Any

import hvac
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.devenv import StackInfo

from .conftest import (
    RunningOperator,
    get_source,
    operator_settings,
    secret_source,
    wait_for,
    wait_ready,
)

PER_OBJECT = ("rotor_secret_age_seconds", "rotor_rotation_last_success_timestamp_seconds",
              "rotor_rotation_next_timestamp_seconds", "rotor_lease_expiry_timestamp_seconds")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def running(info: StackInfo, **settings: Any) -> tuple[RunningOperator, int]:
    port = free_port()
    config = operator_settings(info, **settings).model_copy(update={"metrics_port": port})
    return RunningOperator(config).start(), port


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
        return text


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """/metrics as {series name: {sorted labels: value}}."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(fetch(port)):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def series(port: int, name: str, namespace: str, obj: str) -> float | None:
    return scrape(port).get(name, {}).get((("name", obj), ("namespace", namespace)))


def source_with_policy(custom: Any, vault: hvac.Client, namespace: str, role: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "v1"}, mount_point="secret")
    secret_source(custom, namespace, "db", {
        "provider": "vault", "serviceAccountName": "app", "vault": {"path": f"{namespace}/db", "role": role},
        "refresh": {"interval": "1s", "jitter": 0}})  # synced every second: the age must still grow
    custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "rotationpolicies", {
        "apiVersion": "rotor.dev/v1alpha1", "kind": "RotationPolicy", "metadata": {"name": "db"},
        "spec": {"secretSourceRef": {"name": "db"}, "strategy": "versioned", "schedule": {"interval": "720h"}}})
    wait_ready(custom, namespace, "db")


@pytest.mark.usefixtures("operator_aside", "operator_logs")
def test_with_per_object_metrics_a_secret_age_grows_and_deleted_objects_vanish(
        info: StackInfo, custom: Any, vault: hvac.Client, namespace: str, app_identity: str) -> None:
    rotor, port = running(info, metrics_secret_names=True)
    try:
        source_with_policy(custom, vault, namespace, app_identity)
        assert get_source(custom, namespace, "db")["status"]["lastChangeTime"]
        first = wait_for(lambda: series(port, "rotor_secret_age_seconds", namespace, "db"), what="age series")
        assert 0 < first < 30
        time.sleep(2.5)  # two or three unchanged syncs: the value did not change, so the age keeps growing
        second = series(port, "rotor_secret_age_seconds", namespace, "db")
        assert second is not None and second - first >= 2.4, (first, second)

        def next_rotation() -> float | None:
            return series(port, "rotor_rotation_next_timestamp_seconds", namespace, "db")

        due = wait_for(next_rotation, what="next rotation series")
        assert 719 * 3600 < due - time.time() <= 720 * 3600  # created just now, interval 720h
        assert series(port, "rotor_rotation_last_success_timestamp_seconds", namespace, "db") is None  # never rotated
        assert series(port, "rotor_lease_expiry_timestamp_seconds", namespace, "db") is None  # no lease

        # A new value resets the age.
        vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "v2"}, mount_point="secret")
        wait_for(lambda: (series(port, "rotor_secret_age_seconds", namespace, "db") or 99) < 2, timeout=15,
                 what="the age to restart after a new value")

        custom.delete_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "rotationpolicies", "db")
        custom.delete_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "secretsources", "db")

        def gone() -> bool:
            scraped = scrape(port)
            return not any(("namespace", namespace) in labels for name in PER_OBJECT
                           for labels in scraped.get(name, {}))

        wait_for(gone, what="no series left for the deleted objects")
    finally:
        rotor.stop()


@pytest.mark.usefixtures("operator_aside", "operator_logs")
def test_without_per_object_metrics_none_of_their_series_exist(
        info: StackInfo, custom: Any, vault: hvac.Client, namespace: str, app_identity: str) -> None:
    rotor, port = running(info)  # the default: metrics_secret_names off
    try:
        source_with_policy(custom, vault, namespace, app_identity)
        wait_for(lambda: series(port, "rotor_rotation_next_timestamp_seconds", namespace, "db") is None
                 and custom.get_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, "rotationpolicies",
                                                         "db").get("status", {}).get("nextRotationTime"),
                 what="the policy to be scheduled")
        text = fetch(port)
        assert "rotor_sync_total{" in text, "the scrape itself works"
        assert not [name for name in PER_OBJECT if name in text]  # not even an empty family
    finally:
        rotor.stop()
