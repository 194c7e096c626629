"""The Prometheus alert rules in the chart: the alerts the issue asks for, each naming metrics
Rotor exports, each with a severity and text an on-call engineer can act on. (promtool validates
and unit-tests them in tests/integration/test_promtool.py.)"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .promql import PROMETHEUS_SERIES, REPO, exported_series, metric_names

ALERTS = REPO / "charts" / "rotor" / "files" / "alerts.yaml"
EXPECTED = {"RotorOperatorDown", "RotorBackendUnreachable", "RotorSyncFailing", "RotorRotationOverdue",
            "RotorRotationRolledBack", "RotorLeaseExpiringSoon", "RotorLeakIncidentOpen",
            "RotorCertificateNotRenewed"}  # issue 17: a certificate close to expiry that was not renewed


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    assert set(loaded) == {"groups"}, "a plain rules file: the chart wraps its groups in a PrometheusRule"
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_the_alerts_the_issue_lists_exist(rules: list[dict[str, Any]]) -> None:
    assert {r["alert"] for r in rules} == EXPECTED


def test_every_alert_names_only_metrics_rotor_exports(rules: list[dict[str, Any]]) -> None:
    exported = exported_series() | PROMETHEUS_SERIES
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names and names <= exported, f"{rule['alert']}: {names - exported}"


def test_operator_down_covers_a_down_and_a_vanished_target(rules: list[dict[str, Any]]) -> None:
    [down] = [r for r in rules if r["alert"] == "RotorOperatorDown"]
    assert "== 0" in down["expr"] and "absent(" in down["expr"]


def test_every_alert_has_a_severity_and_actionable_text(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning") or "{{" in rule["labels"]["severity"]
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80
