"""CI's e2e run: the e2e/ scenarios against the local control plane, with Rotor as a process under
the chart's ServiceAccount and config (the same code path as E2E_KUBECONFIG against any cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.devenv import Stack

from .harness import REPO, OperatorProcess, chart_operator, install_chart, isolated_stack


@pytest.fixture(scope="module")
def rotor(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    plane = isolated_stack(pytestconfig, tmp_path_factory)
    process = chart_operator(plane, install_chart(plane), tmp_path_factory.mktemp("e2e"), "rotor-e2e-0").start()
    process.wait_log("Rotor started", timeout=60)
    yield process
    process.stop()


def test_e2e_scenarios_pass_against_the_local_control_plane(pytestconfig: pytest.Config,
                                                           tmp_path_factory: pytest.TempPathFactory,
                                                           rotor: OperatorProcess) -> None:
    plane: Stack = isolated_stack(pytestconfig, tmp_path_factory)
    report = tmp_path_factory.mktemp("e2e-report") / "junit.xml"
    env = {**os.environ, "E2E_KUBECONFIG": plane.info.kubeconfig, "E2E_VAULT_ADDR": plane.info.vault_addr,
           "E2E_VAULT_TOKEN": plane.info.vault_root_token}
    result = subprocess.run([sys.executable, "-m", "pytest", "e2e", "-q", "-p", "no:cacheprovider",
                             f"--junitxml={report}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    print(result.stdout[-3000:])
    assert result.returncode == 0, f"e2e failed:\n{result.stdout[-5000:]}\n{result.stderr[-2000:]}\n{rotor.tail()}"
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        skipped = case.find("skipped")
        outcomes[case.get("name", "")] = "passed" if skipped is None and case.find("failure") is None else (
            f"skipped: {skipped.get('message', '')}" if skipped is not None else "failed")
    assert outcomes["test_vault_secret_is_delivered_and_follows_changes"] == "passed"
    # No kubelet here: the workload half says so instead of pretending.
    assert "no Ready node" in outcomes["test_annotated_deployment_reads_the_secret"]
    assert outcomes["test_rotation_with_overlap_never_breaks_a_reader"] == "passed"
    assert outcomes["test_reported_leak_is_contained_and_audited"] == "passed"
