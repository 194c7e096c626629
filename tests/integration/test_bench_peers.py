"""Smoke mode of `make bench-peers` (N=20): the harness that compares Rotor with External Secrets Operator
and Vault Secrets Operator must not rot. Rotor's row always runs; each peer's rows run when its binary is
built (`make peers`, never in CI) and skip saying exactly what is missing and how to build it.

Each run starts its own stacks (one per contender), so it does not use the suite's shared control plane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack"))
from peers_contenders import contenders  # noqa: E402

N = 20


def bench(only: str, out: Path) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "hack" / "bench_peers.py"), "--sources", str(N), "--interval", "5s",
         "--only", only, "--out", str(out), "--cold-timeout", "120"],
        capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, f"bench_peers failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return json.loads((out / f"peers-{N}.json").read_text()), proc.stdout


def check(result: dict[str, Any], label: str, table: str) -> None:  # a polling contender
    # Every target Secret was right from a cold start, every Vault change reached its Secret, and the
    # table shows this contender's column.
    assert result["cold_start_s"] > 0
    assert result["propagated"] == f"{N}/{N}"
    assert result["propagation_p99_s"] is not None
    assert result["cycle_vault_reads"] > 0, "no refresh read Vault in the idle cycle"
    assert result["read_gap_p50_s"] is not None and result["read_gaps"] > 0
    assert result["rss_mib_peak"] > 0 and result["cold_cpu_s"]["operator"] > 0
    header = table.splitlines()[2]
    assert label in [cell.strip() for cell in header.strip("|").split("|")]


def test_rotor_row(tmp_path: Path) -> None:
    results, table = bench("rotor", tmp_path)
    check(results["contenders"]["rotor"], "Rotor", table)
    # Asked for every 5 s, read every 10 s (the operator's minimum), never later: jitter only makes a
    # refresh earlier.
    assert 8.5 <= results["contenders"]["rotor"]["read_gap_p50_s"] <= 10.5
    assert "all 20 target Secrets right, from a cold start" in table


def test_rotor_with_the_change_feed_row(tmp_path: Path) -> None:
    results, table = bench("rotor-feed", tmp_path)
    result = results["contenders"]["rotor-feed"]
    assert result["cold_start_s"] > 0 and result["feed_enabled_after_s"] is not None
    assert result["propagated"] == f"{N}/{N}"
    # Polling every 5 s would take 2.5 s at the median and about 5 s at p99, and read each secret once a
    # cycle; the feed delivers each write at once and its healthy refreshes wait.
    assert result["propagation_p99_s"] < 2.5, result
    assert result["cycle_vault_reads"] < N, result
    assert "Rotor, change feed" in table.splitlines()[2]


@pytest.mark.parametrize("peer", ["eso", "vso"])
def test_peer_rows(peer: str, tmp_path: Path) -> None:
    found, missing = contenders([peer, f"{peer}-tuned"])
    if not found:
        reason = next(m for m in missing if m.startswith({"eso": "External", "vso": "Vault"}[peer]))
        pytest.skip(f"{reason} (CI does not build the peers)")
    results, table = bench(f"{peer},{peer}-tuned", tmp_path)
    for contender in found:
        check(results["contenders"][contender.key], contender.label, table)
