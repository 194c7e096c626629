"""The Grafana dashboard in the chart: every query names metrics Rotor exports; every SRE question
from the issue has a panel; the JSON is a dashboard Grafana's sidecar can load."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from .promql import PROMETHEUS_SERIES, REPO, exported_series, metric_names

DASHBOARD = REPO / "charts" / "rotor" / "files" / "dashboard.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels") or ()  # collapsed rows nest their panels


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets") or ():
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["query"]["query"])
            assert found, f"variable {variable['name']}: expected label_values(<selector>, <label>)"
            yield f"${variable['name']}", found.group(1)


def test_every_query_names_only_metrics_rotor_exports(dashboard: dict[str, Any]) -> None:
    exported = exported_series()
    unknown = {(where, name) for where, expr in queries(dashboard) for name in metric_names(expr)
               if name not in exported | PROMETHEUS_SERIES}
    assert not unknown, f"queries name metrics Rotor does not export: {sorted(unknown)}"


def test_every_query_selects_at_least_one_metric(dashboard: dict[str, Any]) -> None:
    empty = [where for where, expr in queries(dashboard) if not metric_names(expr)]
    assert not empty


def test_every_rotor_selector_is_scoped_to_the_job_variable(dashboard: dict[str, Any]) -> None:
    for where, expr in queries(dashboard):
        if where == "$job":
            continue
        selectors = re.findall(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", expr)
        assert selectors, f"{where}: {expr} has no label selector"
        for name, matchers in selectors:
            assert 'job=~"$job"' in matchers, f"{where}: {name} is not filtered by $job"


def test_the_sre_questions_have_panels(dashboard: dict[str, Any]) -> None:
    used = {name for _, expr in queries(dashboard) for name in metric_names(expr)}
    needed = {
        "sync health": {"rotor_sync_total", "rotor_secretsources", "rotor_sync_duration_seconds_bucket"},
        "propagation delay": {"rotor_propagation_seconds_bucket"},
        "rotations and rollbacks": {"rotor_rotations_total", "rotor_rotation_rollbacks_total"},
        "overdue for rotation": {"rotor_rotations_overdue", "rotor_rotation_next_timestamp_seconds"},
        "leases expiring": {"rotor_leases_expiring_soon", "rotor_lease_expiry_timestamp_seconds"},
        "open incidents": {"rotor_leak_incidents_open"},
        "time to revoke": {"rotor_leak_time_to_revoke_seconds_bucket"},
        "backend latency and errors": {"rotor_backend_request_duration_seconds_bucket", "rotor_backend_requests_total",
                                       "rotor_backend_up"},
        "consumers on current vs older version": {"rotor_consumers"},
    }
    missing = {topic: names - used for topic, names in needed.items() if names - used}
    assert not missing


def test_grafana_can_load_it(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] == "Rotor" and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in panels(dashboard) if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    occupied: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{panel['title']} is wider than the grid"
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel.get("description"), f"{panel['title']} has no description"
        for target in panel["targets"]:
            for variable in re.findall(r"\$(\w+)", target["expr"]):
                assert variable in variables | {"__rate_interval", "__range", "__interval"}, variable


def test_every_panel_is_described_in_the_docs(dashboard: dict[str, Any]) -> None:
    """No image of the dashboard is rendered here (no Grafana); docs/dashboard.md describes each panel."""
    doc = (REPO / "docs" / "dashboard.md").read_text()
    missing = [p["title"] for p in panels(dashboard) if p["type"] != "row" and f"**{p['title']}**" not in doc]
    assert not missing
