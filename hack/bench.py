"""`make bench N=1000`: SecretSource sync at scale against the local control plane and Vault
(`--backend aws`: AWS Secrets Manager as moto emulates it, IAM enforced).

Prints a table and writes bench-results/secretsync-N.json (secretsync-aws-N.json). Rotor runs as a separate process
(`rotor run`) so its RSS and CPU are its own. Figures, not pass/fail: this is a benchmark.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
from bench_backends import AwsBench, BenchBackend, VaultBench
from benchstack import client_with_crds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the local stack lives in tests/devenv
from tests.devenv import Stack
from tests.devenv.process import free_port

REPO = Path(__file__).resolve().parents[1]
PER_NAMESPACE = 100


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--interval", default=None,
                        help="refresh interval of every source (default: 60s per 1,000 sources, so a cycle is "
                        "about 17 syncs/s whatever N; 10,000 sources get 600s)")
    parser.add_argument("--probes", type=int, default=50, help="sources whose backend value changes")
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--cold-start-only", action="store_true", help="stop once every source is Ready")
    parser.add_argument("--backend", choices=("vault", "aws"), default="vault",
                        help="where the secrets live: the local Vault, or moto (AWS Secrets Manager)")
    args = parser.parse_args()
    # SIGTERM (a killed bench) still runs the finally below, so no server outlives the bench.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n = args.sources
    if args.interval is None:
        args.interval = f"{max(60, n * 60 // 1000)}s"
    interval = float(args.interval.rstrip("s"))
    namespaces = [f"bench-{i:03d}" for i in range((n + PER_NAMESPACE - 1) // PER_NAMESPACE)]
    results: dict[str, Any] = {"sources": n, "namespaces": len(namespaces), "refresh_interval_s": interval}

    state = Path(tempfile.mkdtemp(prefix="rotor-bench-"))
    stack = Stack(state / "devenv", with_postgres=False)
    info = stack.start()
    operator: subprocess.Popen[bytes] | None = None
    backend: BenchBackend | None = None
    try:
        backend = AwsBench() if args.backend == "aws" else VaultBench(stack)
        results["backend"] = backend.name
        api = client_with_crds(info.kubeconfig)
        core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        t = time.monotonic()
        setup(backend, core, custom, namespaces, n, args.interval)
        results["setup_s"] = round(time.monotonic() - t, 1)
        log(f"created {n} SecretSources in {len(namespaces)} namespaces in {results['setup_s']}s")

        metrics_port = free_port()
        env = {**os.environ, "KUBECONFIG": info.kubeconfig, "ROTOR_METRICS_PORT": str(metrics_port),
               **backend.env(), "ROTOR_SYNC_WORKERS": "32", "ROTOR_LOG_LEVEL": "warning"}
        started = time.monotonic()
        # ROTOR_BENCH_OPERATOR: another command line for the operator (a profiler wrapping `rotor run`).
        command = os.environ.get("ROTOR_BENCH_OPERATOR", f"{sys.executable} -m rotor run").split()
        operator = subprocess.Popen(command, env=env,
                                    stdout=open(state / "operator.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        ready_at = wait_all_ready(custom, n, started, operator, metrics_port)
        results["cold_start_cpu_s"] = round(cpu_seconds(operator.pid), 1)
        results["cold_start_all_ready_s"] = round(ready_at, 1)
        results["syncs_per_s_cold"] = round(n / ready_at, 1)
        log(f"all {n} Ready {ready_at:.1f}s after the operator started")
        results["rss_mib_all_ready"] = round(rss_mib(operator.pid), 1)
        if args.cold_start_only:
            print(json.dumps(results, indent=2))
            return 0

        time.sleep(5)
        cpu0, t0 = cpu_seconds(operator.pid), time.monotonic()
        before = scrape(metrics_port)
        time.sleep(args.idle_seconds)
        results["idle_cpu_percent"] = round(100 * (cpu_seconds(operator.pid) - cpu0) / (time.monotonic() - t0), 1)
        results["rss_mib"] = round(rss_mib(operator.pid), 1)
        # A full refresh cycle with nothing changed: every source due once (the window is 1.15 intervals
        # so jitter cannot leave one out). Costs are per sync, then per cycle = per sync x N sources.
        remaining = max(0.0, interval * 1.15 - args.idle_seconds)
        time.sleep(remaining)
        after = scrape(metrics_port)
        results["cycle_cpu_percent"] = round(100 * (cpu_seconds(operator.pid) - cpu0) / (time.monotonic() - t0), 1)
        results["rss_mib_peak"] = round(rss_mib(operator.pid, "VmHWM"), 1)
        syncs = delta(before, after, "rotor_sync_total")
        results["syncs_in_window"] = syncs
        per_sync = {
            "kube_requests": delta(before, after, "rotor_kube_requests_total"),
            "kube_writes": delta(before, after, "rotor_kube_requests_total",
                                 verbs=("create", "replace", "patch", "delete")),
            f"{backend.name}_requests": delta(before, after, "rotor_backend_requests_total"),
            f"{backend.name}_logins": delta(before, after, "rotor_backend_logins_total"),
        }
        for name, total in per_sync.items():
            results[f"{name}_per_sync"] = round(total / syncs, 3) if syncs else float("nan")
            results[f"{name}_per_cycle"] = round(total / syncs * n, 1) if syncs else float("nan")

        delays = propagation(backend, core, namespaces, n, min(args.probes, n), interval)
        results["propagation_p50_s"] = round(statistics.median(delays), 2)
        results["propagation_p99_s"] = round(percentile(delays, 99), 2)
        results["propagation_max_s"] = round(max(delays), 2)
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                operator.kill()
        if backend is not None:
            backend.close()
        stack.stop()

    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    suffix = "" if backend.name == "vault" else f"{backend.name}-"
    (out / f"secretsync-{suffix}{n}.json").write_text(json.dumps(results, indent=2))
    print_table(results, backend)
    return 0


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def setup(backend: BenchBackend, core: Any, custom: Any, namespaces: list[str], n: int, interval: str) -> None:
    for ns in namespaces:
        core.create_namespace({"metadata": {"name": ns}})
        core.create_namespaced_service_account(ns, {"metadata": {"name": "app"}})
        backend.prepare(ns)

    def one(i: int) -> None:
        ns = namespaces[i // PER_NAMESPACE]
        backend.put(ns, i, f"v0-{i}")
        custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", ns, "secretsources", {
            "apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource", "metadata": {"name": f"s{i}"},
            "spec": {**backend.spec(ns, i), "serviceAccountName": "app",
                     "refresh": {"interval": interval, "jitter": 0.1}}})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))


def wait_all_ready(custom: Any, n: int, started: float, operator: subprocess.Popen[bytes], port: int) -> float:
    """Seconds until every source is Ready: the operator's own gauge says so (a cheap poll that does not
    load the API server), then one list of the SecretSources confirms it from their status."""
    while True:
        if operator.poll() is not None:
            raise RuntimeError("the operator exited during the benchmark")
        try:
            ready_gauge = scrape(port).get('rotor_secretsources{ready="True",reason="Synced"}', 0.0)
        except OSError:
            ready_gauge = 0.0  # not listening yet
        if ready_gauge < n:
            time.sleep(0.5)
            continue
        elapsed = time.monotonic() - started
        items = custom.list_cluster_custom_object("rotor.dev", "v1alpha1", "secretsources")["items"]
        ready = sum(1 for o in items for c in (o.get("status") or {}).get("conditions") or []
                    if c["type"] == "Ready" and c["status"] == "True")
        if ready >= n:
            return elapsed
        time.sleep(1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or its peak so far (VmHWM)."""
    match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def delta(before: dict[str, float], after: dict[str, float], metric: str,
          verbs: tuple[str, ...] | None = None) -> float:
    total = 0.0
    for key, value in after.items():
        if not key.startswith(metric + "{"):
            continue
        if verbs is not None and not any(f'verb="{v}"' in key for v in verbs):
            continue
        total += value - before.get(key, 0.0)
    return total


def propagation(backend: BenchBackend, core: Any, namespaces: list[str], n: int, probes: int,
                interval: float) -> list[float]:
    """Change PROBES backend values at once; time until each target Secret holds the new value."""
    step = max(1, n // probes)
    chosen = list(range(0, n, step))[:probes]
    written: dict[tuple[str, str], float] = {}
    seen: dict[tuple[str, str], float] = {}
    done = threading.Event()

    def watch() -> None:
        w = kubernetes.watch.Watch()
        for event in w.stream(core.list_secret_for_all_namespaces,
                              label_selector="app.kubernetes.io/managed-by=rotor", timeout_seconds=int(interval * 3)):
            secret = event["object"]
            key = (secret.metadata.namespace, secret.metadata.name)
            value = base64.b64decode((secret.data or {}).get("value", "")).decode()
            if key in written and key not in seen and value.startswith("v1-"):
                seen[key] = time.monotonic() - written[key]
                if len(seen) == len(chosen):
                    done.set()
                    w.stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(2)
    for i in chosen:
        ns = namespaces[i // PER_NAMESPACE]
        backend.put(ns, i, f"v1-{i}")
        written[(ns, f"s{i}")] = time.monotonic()
    done.wait(interval * 3)
    if len(seen) < len(chosen):
        log(f"only {len(seen)} of {len(chosen)} changes propagated within {interval * 3:.0f}s")
    return list(seen.values()) or [float("nan")]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def print_table(results: dict[str, Any], backend: BenchBackend) -> None:
    name, label = backend.name, backend.label
    rows = [
        ("SecretSources / namespaces", f"{results['sources']} / {results['namespaces']}"),
        ("refresh interval", f"{results['refresh_interval_s']:.0f}s (jitter 10%)"),
        ("cold start: all Ready after", f"{results['cold_start_all_ready_s']}s"),
        ("syncs per second (cold start)", results["syncs_per_s_cold"]),
        ("operator CPU during cold start", f"{results['cold_start_cpu_s']}s"),
        ("operator RSS: all Ready / idle / peak", f"{results['rss_mib_all_ready']} / {results['rss_mib']} / "
                                                  f"{results['rss_mib_peak']} MiB"),
        ("operator CPU: idle / over a refresh cycle", f"{results['idle_cpu_percent']}% / "
                                                      f"{results['cycle_cpu_percent']}%"),
        ("syncs measured (1.15 refresh intervals)", results["syncs_in_window"]),
        ("Kubernetes requests per cycle (no change)", results["kube_requests_per_cycle"]),
        ("Kubernetes writes per cycle (no change)", results["kube_writes_per_cycle"]),
        (f"{label} requests per cycle (no change)", f"{results[f'{name}_requests_per_cycle']} "
                                                   f"({results[f'{name}_requests_per_sync']} per sync)"),
        (f"{label} logins per cycle (token cache)", results[f"{name}_logins_per_cycle"]),
        ("propagation p50 / p99 / max", f"{results['propagation_p50_s']}s / {results['propagation_p99_s']}s / "
                                        f"{results['propagation_max_s']}s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'metric':<{width}}  value\n{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
