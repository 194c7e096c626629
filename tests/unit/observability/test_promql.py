"""The PromQL name extractor the dashboard and alert checks rely on: it must not miss a metric."""

from __future__ import annotations

import pytest

from .promql import exported_series, metric_names


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (result) (rate(rotor_sync_total{job=~"$job"}[$__rate_interval]))', {"rotor_sync_total"}),
    ('histogram_quantile(0.95, sum by (le, backend) (rate(rotor_backend_request_duration_seconds_bucket'
     '{job=~"$job", backend=~"a|b"}[5m])))', {"rotor_backend_request_duration_seconds_bucket"}),
    ('up{job=~".*rotor.*"} == 0 or absent(up{job=~".*rotor.*"})', {"up"}),
    ("increase(a_total[1h]) > 0 or max by (x) (a_total unless a_total offset 1h)", {"a_total"}),
    ('label_replace(max by (job, severity) (b) > 0, "dst", "$1", "severity", "(.*)")', {"b"}),
    ("(time() - max by (namespace, name) (c_seconds)) > 0", {"c_seconds"}),
    ("sum(x) / on(job) group_left(version) y * 2 + rotor_build_info", {"x", "y", "rotor_build_info"}),
    ("rate(foo[5m:30s]) and bool bar", {"foo", "bar"}),
    ("label_values(rotor_build_info, job)", {"rotor_build_info", "job"}),
])
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exported_series_follow_prometheus_naming() -> None:
    series = exported_series()
    assert {"rotor_sync_total", "rotor_sync_duration_seconds_bucket", "rotor_sync_duration_seconds_count",
            "rotor_backend_up", "rotor_build_info"} <= series
    assert "rotor_sync" not in series and "rotor_sync_duration_seconds" not in series
