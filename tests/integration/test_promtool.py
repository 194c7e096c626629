"""Alert rules validated by Prometheus' own promtool (built from its Go module by `make testbin`):
`promtool check rules` accepts the file, and `promtool test rules` fires and clears every alert."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.devenv import binaries

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "charts" / "rotor" / "files" / "alerts.yaml"
TESTS = sorted((REPO / "tests" / "promtool").glob("*.yaml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # A missing promtool raises MissingBinary: a failure, never a skip.
    return subprocess.run([str(binaries.find("promtool")), *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(g["rules"]) for g in yaml.safe_load(ALERTS.read_text())["groups"])
    assert f"SUCCESS: {rules} rules found" in result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: a rule with a PromQL syntax error is refused."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"alert": "Broken", "expr": "max by (job (rotor_backend_up) == 0"}]}]}))
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0 and "parse error" in (result.stdout + result.stderr)


def test_every_alert_fires_and_clears_in_the_unit_tests() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    fired: set[str] = set()
    cleared: set[str] = set()
    for path in TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test") or ():
                (fired if case.get("exp_alerts") else cleared).add(case["alertname"])
    assert alerts <= fired, f"alerts no test fires: {alerts - fired}"
    assert alerts <= cleared, f"alerts no test sees clear: {alerts - cleared}"
    result = promtool("test", "rules", *map(str, TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
