"""The one table hack/bench_peers.py prints (Markdown, so docs/benchmarks.md takes it as it is)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = tuple[str, Callable[[dict[str, Any]], list[float | None]], str]


def _stack(cpu: dict[str, float]) -> float:
    return round(sum(v for k, v in cpu.items() if k != "operator"), 1)


ROWS: list[Row] = [
    ("all {n} target Secrets right, from a cold start (s)", lambda r: [r.get("cold_start_s")], "{:.1f}"),
    ("operator CPU during that (s)", lambda r: [r["cold_cpu_s"]["operator"]], "{:.1f}"),
    ("kube-apiserver + etcd + Vault CPU during that (s)", lambda r: [_stack(r["cold_cpu_s"])], "{:.1f}"),
    ("operator RSS: peak / idle (MiB)", lambda r: [r["rss_mib_peak"], r["rss_mib_idle"]], "{:.0f}"),
    ("idle refresh cycle: Kubernetes requests / writes",
     lambda r: [r["cycle_kube_requests"], r["cycle_kube_writes"]], "{:,.0f}"),
    ("idle refresh cycle: Vault requests / secret reads / logins",
     lambda r: [r["cycle_vault_requests"], r["cycle_vault_reads"], r["cycle_vault_logins"]], "{:,.0f}"),
    ("idle refresh cycle: operator CPU / kube-apiserver + etcd + Vault CPU (s)",
     lambda r: [r["cycle_cpu_s"]["operator"], _stack(r["cycle_cpu_s"])], "{:.1f}"),
    ("propagation of a Vault write: p50 / p99 (s)",
     lambda r: [r.get("propagation_p50_s"), r.get("propagation_p99_s")], "{:.1f}"),
    ("median time between two Vault reads of one secret (s)", lambda r: [r.get("read_gap_p50_s")], "{:.1f}"),
    ("whole run: operator CPU / kube-apiserver + etcd + Vault CPU (s)",
     lambda r: [r["total_cpu_s"]["operator"], _stack(r["total_cpu_s"])], "{:.1f}"),
]


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return "-"
    if theirs == 0:
        return "=" if ours == 0 else "inf"
    return f"{ours / theirs:.2f}x"


def _cell(values: list[float | None], fmt: str, rotor: list[float | None] | None) -> str:
    text = " / ".join("-" if v is None else fmt.format(v) for v in values)
    if rotor is None:
        return text
    return f"{text} ({' / '.join(_ratio(a, b) for a, b in zip(rotor, values, strict=True))})"


def table(results: dict[str, Any]) -> str:
    runs: dict[str, dict[str, Any]] = results["contenders"]
    keys = list(runs)
    rotor = runs.get("rotor")
    n_text = f"{results['sources']:,}"
    lines = [
        f"N = {results['sources']:,} KV v2 secrets, refresh every {results['refresh_interval_s']:.0f}s, "
        f"{results['probes']} probes for propagation. In brackets: Rotor's figure / the peer's (below 1x: Rotor "
        "needs less). Idle-cycle counts are scaled to one refresh interval.",
        "",
        "| | " + " | ".join(runs[k]["label"] for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for title, get, fmt in ROWS:
        ours = get(rotor) if rotor is not None else None
        cells = [_cell(get(runs[k]), fmt, None if k.startswith("rotor") else ours) for k in keys]
        lines.append(f"| {title.format(n=n_text)} | " + " | ".join(cells) + " |")
    secrets_read = ", ".join(f"{runs[k]['label']} {runs[k]['cycle_secrets_read']:,}" for k in keys)
    tuned = "; ".join(f"{runs[k]['label']} `{' '.join(runs[k]['flags'])}`" for k in keys if runs[k]["flags"])
    lines += ["", f"Distinct secrets read from Vault in the idle window: {secrets_read}.",
              f"Tuned flags: {tuned}." if tuned else "No tuned flags in this run."]
    for reason in results.get("missing", []):
        lines.append(f"Not run: {reason}")
    return "\n".join(lines)
