"""`make bench N=1000`: SecretSource sync at scale against the local control plane and Vault
(`--backend aws`: AWS Secrets Manager as moto emulates it, IAM enforced; `--feed on`: Rotor as the sink of
Vault's socket audit device, the change feed of docs/secretsource.md, with polling as its backstop).

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
from bench_feed import Feed
from benchstack import client_with_crds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the local stack lives in tests/devenv
from tests.devenv import Stack
from tests.devenv.process import free_port

REPO = Path(__file__).resolve().parents[1]
PER_NAMESPACE = 100
STACK_PROCESSES = ("kube-apiserver", "etcd", "vault")


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
    parser.add_argument("--feed", choices=("on", "off"), default="off",
                        help="Vault only: the change feed (a socket audit device streaming to Rotor) on or off")
    parser.add_argument("--latency-requests", type=int, default=300,
                        help="Vault KV writes timed one by one, with Rotor running and once it stopped")
    args = parser.parse_args()
    if args.feed == "on" and args.backend != "vault":
        parser.error("--feed on needs --backend vault")
    # SIGTERM (a killed bench) still runs the finally below, so no server outlives the bench.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n = args.sources
    if args.interval is None:
        args.interval = f"{max(60, n * 60 // 1000)}s"
    interval = float(args.interval.rstrip("s"))
    namespaces = [f"bench-{i:03d}" for i in range((n + PER_NAMESPACE - 1) // PER_NAMESPACE)]
    results: dict[str, Any] = {"sources": n, "namespaces": len(namespaces), "refresh_interval_s": interval,
                               "feed": args.feed, "load_average_at_start": os.getloadavg()[0]}

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
        feed: Feed | None = Feed(stack, state) if args.feed == "on" else None
        if feed is not None:
            env["ROTOR_VAULT_CONNECTIONS"] = feed.configure(env["ROTOR_VAULT_CONNECTIONS"])
        # The rest of the stack's CPU (each process's own accounting) over the cold start: at 10,000 sources
        # the machine's two cores are the limit, and most of them go to the API server, etcd and Vault.
        stack_pids = {name: proc.popen.pid for name in STACK_PROCESSES
                      if (proc := stack.procs.get(name)) is not None and proc.popen is not None}
        stack_cpu0 = {name: cpu_seconds(pid) for name, pid in stack_pids.items()}
        started = time.monotonic()
        # ROTOR_BENCH_OPERATOR: another command line for the operator (a profiler wrapping `rotor run`).
        command = os.environ.get("ROTOR_BENCH_OPERATOR", f"{sys.executable} -m rotor run").split()
        operator = subprocess.Popen(command, env=env,
                                    stdout=open(state / "operator.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        if feed is not None:  # as soon as Rotor listens: its first reads are then vouched for
            threading.Thread(target=feed.enable, daemon=True).start()
        ready_at = wait_all_ready(custom, n, started, operator, metrics_port)
        results["cold_start_cpu_s"] = round(cpu_seconds(operator.pid), 1)
        results["cold_start_stack_cpu_s"] = {name: round(cpu_seconds(pid) - stack_cpu0[name], 1)
                                             for name, pid in stack_pids.items()}
        # Issue 18's goal figure (start-up included: imports, Kopf, the first lists).
        results["cpu_ms_per_first_sync"] = round(1000 * cpu_seconds(operator.pid) / n, 2)
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
        cycle_cpu = cpu_seconds(operator.pid) - cpu0
        results["cycle_cpu_percent"] = round(100 * cycle_cpu / (time.monotonic() - t0), 1)
        results["rss_mib_peak"] = round(rss_mib(operator.pid, "VmHWM"), 1)
        syncs = delta(before, after, "rotor_sync_total")
        # Issue 18's goal figure: all the operator's CPU over the window (idle baseline included) per sync.
        results["cpu_ms_per_unchanged_refresh"] = round(1000 * cycle_cpu / syncs, 2) if syncs else None
        results["syncs_in_window"] = syncs
        per_sync = {
            "kube_requests": delta(before, after, "rotor_kube_requests_total"),
            "kube_writes": delta(before, after, "rotor_kube_requests_total",
                                 verbs=("create", "replace", "patch", "delete")),
            f"{backend.name}_requests": delta(before, after, "rotor_backend_requests_total"),
            f"{backend.name}_logins": delta(before, after, "rotor_backend_logins_total"),
        }
        for name, total in per_sync.items():
            results[f"{name}_per_sync"] = round(total / syncs, 3) if syncs else 0.0
            # With the feed, timer refreshes wait and the few syncs are not a sample of a cycle: the
            # window's own total (it spans a cycle) is the figure.
            results[f"{name}_per_cycle"] = total if feed is not None or not syncs else round(total / syncs * n, 1)

        results["refreshes_waited_in_window"] = delta(before, after, "rotor_changefeed_skipped_refreshes_total")
        delays = propagation(backend, core, namespaces, n, min(args.probes, n), interval)
        results["propagation_p50_s"] = round(statistics.median(delays), 2)
        results["propagation_p99_s"] = round(percentile(delays, 99), 2)
        results["propagation_max_s"] = round(max(delays), 2)
        if feed is not None:
            results["feed_enabled_after_s"] = feed.enabled_after
            after_probes = scrape(metrics_port)
            results["feed_syncs"] = delta(before, after_probes, "rotor_changefeed_syncs_total")
            results["feed_fallbacks"] = delta(before, after_probes, "rotor_changefeed_fallbacks_total")
        # Vault's latency in the same conditions: with the socket device (feed on) Rotor listening, then
        # gone (Vault's connection attempt fails at each request); then without the device.
        results["vault_write_ms_rotor_running"] = vault_latency(stack, args.latency_requests)
        operator.terminate()
        operator.wait(30)
        results["vault_write_ms_rotor_stopped"] = vault_latency(stack, args.latency_requests)
        if feed is not None:
            stack.vault_request("DELETE", "/v1/sys/audit/rotor-feed")
            results["vault_write_ms_no_socket_device"] = vault_latency(stack, args.latency_requests)
        results["load_average_at_end"] = os.getloadavg()[0]
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
    suffix = ("" if backend.name == "vault" else f"{backend.name}-") + ("feed-" if args.feed == "on" else "")
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

    selector = "app.kubernetes.io/managed-by=rotor"
    # From the current resourceVersion: no synthetic ADDED event per existing Secret (10,000 of them would
    # delay the changes behind them); and resumed when the API server ends the stream early.
    version = core.list_secret_for_all_namespaces(label_selector=selector, limit=1).metadata.resource_version

    def watch() -> None:
        nonlocal version
        deadline = time.monotonic() + interval * 3
        while not done.is_set() and time.monotonic() < deadline:
            w = kubernetes.watch.Watch()
            try:
                for event in w.stream(core.list_secret_for_all_namespaces, label_selector=selector,
                                      resource_version=version, timeout_seconds=60):
                    secret = event["object"]
                    version = secret.metadata.resource_version
                    key = (secret.metadata.namespace, secret.metadata.name)
                    value = base64.b64decode((secret.data or {}).get("value", "")).decode()
                    if key in written and key not in seen and value.startswith("v1-"):
                        seen[key] = time.monotonic() - written[key]
                        if len(seen) == len(chosen):
                            done.set()
                            w.stop()
            except kubernetes.client.exceptions.ApiException as err:
                log(f"propagation watch: {err.status} {err.reason}; resuming")
                time.sleep(1)

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


def vault_latency(stack: Stack, requests: int) -> dict[str, float]:
    """p50 / p99 / mean of REQUESTS KV writes, one at a time (a path no source reads)."""
    took = []
    for i in range(requests):
        started = time.perf_counter()
        stack.vault_request("POST", f"/v1/secret/data/bench-latency/k{i % 10}", {"data": {"value": f"x{i}"}})
        took.append((time.perf_counter() - started) * 1000)
    return {"p50": round(statistics.median(took), 2), "p99": round(percentile(took, 99), 2),
            "mean": round(statistics.fmean(took), 2)}


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
        ("operator CPU during cold start", f"{results['cold_start_cpu_s']}s "
                                           f"({results['cpu_ms_per_first_sync']} ms per first sync)"),
        ("kube-apiserver / etcd / Vault CPU then", " / ".join(f"{v}s" for v in
                                                                results["cold_start_stack_cpu_s"].values())),
        ("operator RSS: all Ready / idle / peak", f"{results['rss_mib_all_ready']} / {results['rss_mib']} / "
                                                  f"{results['rss_mib_peak']} MiB"),
        ("operator CPU: idle / over a refresh cycle", f"{results['idle_cpu_percent']}% / "
                                                      f"{results['cycle_cpu_percent']}%"),
        ("operator CPU per unchanged refresh", f"{results.get('cpu_ms_per_unchanged_refresh')} ms"),
        ("syncs measured (1.15 refresh intervals)", results["syncs_in_window"]),
        ("timer refreshes that waited (feed healthy)", results["refreshes_waited_in_window"]),
        ("Kubernetes requests per cycle (no change)", results["kube_requests_per_cycle"]),
        ("Kubernetes writes per cycle (no change)", results["kube_writes_per_cycle"]),
        (f"{label} requests per cycle (no change)", f"{results[f'{name}_requests_per_cycle']} "
                                                   f"({results[f'{name}_requests_per_sync']} per sync)"),
        (f"{label} logins per cycle (token cache)", results[f"{name}_logins_per_cycle"]),
        ("propagation p50 / p99 / max", f"{results['propagation_p50_s']}s / {results['propagation_p99_s']}s / "
                                        f"{results['propagation_max_s']}s"),
        ("change feed", results["feed"] + (f" (device enabled {results['feed_enabled_after_s']}s after the start; "
                                           f"{results['feed_syncs']:.0f} syncs asked, {results['feed_fallbacks']:.0f} "
                                           "fallbacks)" if results["feed"] == "on" else "")),
        ("Vault write p50 / p99: Rotor running", _ms(results["vault_write_ms_rotor_running"])),
        ("Vault write p50 / p99: Rotor stopped", _ms(results["vault_write_ms_rotor_stopped"])),
        *([("Vault write p50 / p99: device disabled", _ms(results["vault_write_ms_no_socket_device"]))]
          if "vault_write_ms_no_socket_device" in results else []),
        ("load average (1 min): start / end", f"{results['load_average_at_start']:.2f} / "
                                              f"{results['load_average_at_end']:.2f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'metric':<{width}}  value\n{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _ms(latency: dict[str, float]) -> str:
    return f"{latency['p50']} / {latency['p99']} ms (mean {latency['mean']})"


if __name__ == "__main__":
    sys.exit(main())
