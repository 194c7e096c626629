"""Benchmark `rotor inventory` on a cluster with many Secrets (default 10,000) and prints seconds.

    .venv/bin/python hack/bench_inventory.py [--secrets 10000] [--namespaces 50] [--runs 3]

Starts the local control plane (etcd, kube-apiserver, Vault; no PostgreSQL), fills it with Secrets
(some managed by SecretSources), Deployments and Pods consuming them, then times the inventory as a
user runs it (`python -m rotor inventory -A`, a separate process with only a KUBECONFIG), managed and
--unmanaged. For scale, it also times what the inventory avoids: listing every Secret with its data
through the Python client. Figures, not pass/fail: this is a benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
from benchstack import client_with_crds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the local stack lives in tests/devenv
from tests.devenv import Stack

REPO = Path(__file__).resolve().parents[1]
VALUE = "x" * 48  # a typical credential; three keys per Secret


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secrets", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--managed-fraction", type=float, default=0.2, help="Secrets behind a SecretSource")
    parser.add_argument("--pods", type=int, default=2000, help="bare Pods, each using one Secret")
    parser.add_argument("--deployments", type=int, default=1000, help="Deployments, each using two Secrets")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="rotor-bench-inventory-"))
    stack = Stack(state / "devenv", with_postgres=False)
    info = stack.start()
    try:
        api = client_with_crds(info.kubeconfig)
        core, apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)
        custom = kubernetes.client.CustomObjectsApi(api)
        namespaces = [f"inv-{i:03d}" for i in range(args.namespaces)]
        for name in namespaces:
            core.create_namespace({"metadata": {"name": name, "labels": {"rotor.dev/owner": f"team-{name}"}}})
            # No controller-manager runs here to create it; Pods need their ServiceAccount.
            core.create_namespaced_service_account(name, {"metadata": {"name": "default"}})
        time.sleep(2)  # CRDs established

        per_ns = -(-args.secrets // len(namespaces))
        managed_per_ns = int(per_ns * args.managed_fraction)

        def make_secret(i: int) -> None:
            ns, j = namespaces[i // per_ns], i % per_ns
            managed = j < managed_per_ns
            labels = {"app.kubernetes.io/managed-by": "rotor"} if managed else {}
            core.create_namespaced_secret(ns, {"metadata": {"name": f"s-{j:05d}", "labels": labels},
                                               "stringData": {"user": f"u{j}", "password": VALUE, "url": VALUE}})
            if managed:
                custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", ns, "secretsources", {
                    "apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource", "metadata": {"name": f"s-{j:05d}"},
                    "spec": {"provider": "vault", "vault": {"path": f"{ns}/s-{j}", "role": "app"}}})

        def make_pod(i: int) -> None:
            ns = namespaces[i % len(namespaces)]
            core.create_namespaced_pod(ns, {"metadata": {"name": f"p-{i:05d}"}, "spec": {"containers": [
                {"name": "app", "image": "example.invalid/app:1",
                 "envFrom": [{"secretRef": {"name": f"s-{i % per_ns:05d}"}}]}]}})

        def make_deployment(i: int) -> None:
            ns, labels = namespaces[i % len(namespaces)], {"app": f"d{i}"}
            apps.create_namespaced_deployment(ns, {"metadata": {"name": f"d-{i:05d}"}, "spec": {
                "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
                    "containers": [{"name": "app", "image": "example.invalid/app:1",
                                    "env": [{"name": "P", "valueFrom": {"secretKeyRef": {
                                        "name": f"s-{i % per_ns:05d}", "key": "password"}}}]}],
                    "volumes": [{"name": "v", "secret": {"secretName": f"s-{(i + 1) % per_ns:05d}"}}]}}}})

        started = time.monotonic()
        with ThreadPoolExecutor(24) as pool:
            list(pool.map(make_secret, range(args.secrets)))
            list(pool.map(make_pod, range(args.pods)))
            list(pool.map(make_deployment, range(args.deployments)))
        print(f"created {args.secrets} Secrets ({managed_per_ns * len(namespaces)} managed), {args.pods} Pods, "
              f"{args.deployments} Deployments in {len(namespaces)} namespaces in "
              f"{time.monotonic() - started:.1f}s", file=sys.stderr)

        env = {**os.environ, "KUBECONFIG": info.kubeconfig}
        results: dict[str, Any] = {"secrets": args.secrets, "namespaces": len(namespaces), "pods": args.pods,
                                   "deployments": args.deployments}
        for label, extra in (("managed", []), ("unmanaged", ["--unmanaged"])):
            times, rows = [], 0
            for _ in range(args.runs):
                t = time.monotonic()
                out = subprocess.run([sys.executable, "-m", "rotor", "inventory", "-A", "-o", "json", *extra],
                                     capture_output=True, text=True, env=env, check=True).stdout
                times.append(time.monotonic() - t)
                rows = len(json.loads(out))
            results[f"inventory_{label}_seconds"] = round(statistics.median(times), 2)
            results[f"inventory_{label}_rows"] = rows
        t = time.monotonic()
        _continue, listed = None, 0
        while True:
            page = core.list_secret_for_all_namespaces(limit=500, _continue=_continue)
            listed += len(page.items)
            _continue = page.metadata._continue
            if not _continue:
                break
        results["full_secret_list_seconds"] = round(time.monotonic() - t, 2)
        results["full_secret_list_items"] = listed
    finally:
        stack.stop()

    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key.ljust(width)}  {value}")
    out_dir = REPO / "bench-results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"inventory-{args.secrets}.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
