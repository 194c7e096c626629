"""`make bench-fairness`: a quiet tenant's sync delay and rotation time beside a noisy tenant, whole stack.

Rotor runs as `rotor run` with its defaults (16 sync workers, minimum refresh interval 10 s, a Vault
connection allowing 100 requests/s and 16 at once) against the local kube-apiserver and Vault.
The quiet tenant has QUIET SecretSources (refresh every 10 s) and one RotationPolicy (versioned, on
q0). Its figures, measured for SECONDS alone and then for SECONDS beside the noise:
- refresh-now delay: a probe writes a new value to Vault, sets the rotor.dev/refresh-now annotation
  (as a deploy pipeline would; at most one per 10 s per source, the operator's per-source limit) and
  times until the target Secret holds the value (half of the probed sources);
- scheduled sync lateness (the other half, jitter 0): a probe writes a new value to Vault just after
  the source's last sync wrote its Secret, so its next sync is due INTERVAL later; lateness = the time
  until the Secret holds the value minus INTERVAL (it includes the sync's own read and write);
- rotation time: rotate-now on the RotationPolicy until its status is Complete (one rotation more).
The noisy tenant: NOISY sources at the minimum interval (more than the workers can read), a loop
setting refresh-now on all of them, a loop editing one of its managed Secrets (Rotor restores it), and
a template bomb (CPU-bound loops) included in the refresh-now loop. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
from bench import cpu_seconds, log, scrape
from bench_backends import VaultBench
from benchstack import client_with_crds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.devenv import Stack
from tests.devenv.process import free_port

QUIET, NOISY = "quiet", "noisy"
INTERVAL = 10.0  # every source's refresh interval: the operator's default minimum
GROUP, VERSION = "rotor.dev", "v1alpha1"
BOMB = "{% set x = values.value * 200000 %}{% for a in x %}{% for b in x %}{% endfor %}{% endfor %}"


class Tenants:
    """Both tenants' objects on the stack, and the requests the benchmark makes as them."""

    def __init__(self, stack: Stack, api: kubernetes.client.ApiClient) -> None:
        self.vault = VaultBench(stack)
        self.stack = stack
        self.core, self.custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)

    def namespace(self, ns: str) -> None:
        self.core.create_namespace({"metadata": {"name": ns}})
        self.core.create_namespaced_service_account(ns, {"metadata": {"name": "app"}})
        self.vault.prepare(ns)

    def source(self, ns: str, name: str, data: dict[str, str], jitter: float = 0.1, **target: Any) -> None:
        self.stack.vault_request("POST", f"/v1/secret/data/bench/{ns}/{name}", {"data": data})
        spec = {"provider": "vault", "serviceAccountName": "app", "vault": {"path": f"bench/{ns}/{name}", "role": ns},
                "refresh": {"interval": f"{INTERVAL:.0f}s", "jitter": jitter}, **({"target": target} if target else {})}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "secretsources", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SecretSource", "metadata": {"name": name}, "spec": spec})

    def rotation_policy(self, ns: str, source: str) -> None:
        self.core.create_namespaced_service_account(ns, {"metadata": {"name": "rotator"}})
        role = f"{ns}-rotator"
        self.stack.vault_request("PUT", f"/v1/sys/policies/acl/{role}", {"policy": "\n".join(
            f'path "secret/{kind}/bench/{ns}/*" {{ capabilities = {json.dumps(caps)} }}' for kind, caps in (
                ("data", ["create", "update", "read"]), ("metadata", ["create", "update", "read"]),
                ("destroy", ["update"])))})
        self.stack.vault_request("POST", f"/v1/auth/kubernetes/role/{role}", {
            "bound_service_account_names": ["rotator"], "bound_service_account_namespaces": [ns],
            "policies": [role], "audience": "vault", "ttl": "1h"})
        self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "rotationpolicies", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "RotationPolicy", "metadata": {"name": source},
            "spec": {"secretSourceRef": {"name": source}, "strategy": "versioned", "schedule": {"interval": "720h"},
                     "identity": {"serviceAccountName": "rotator", "role": role}, "versioned": {"keep": 3},
                     "overlap": {"window": "1s"}, "generator": {"length": 20}}})

    def refresh_now(self, ns: str, name: str, plural: str = "secretsources",
                    annotation: str = "rotor.dev/refresh-now") -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, plural, name,
                                                   {"metadata": {"annotations": {annotation: uuid.uuid4().hex}}})

    def policy_status(self, ns: str, name: str) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "rotationpolicies", name)
        return dict(obj.get("status") or {})

    def ready(self, ns: str) -> dict[str, str]:
        """Name -> reason of the Ready condition, for every source in NS."""
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "secretsources")["items"]
        return {o["metadata"]["name"]: next((f"{c['status']}/{c.get('reason')}" for c in
                                             (o.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"),
                                            "none") for o in items}


class SecretWatch(threading.Thread):
    """The quiet tenant's Secrets as a reader sees them: name -> the `value` key, and a condition to wait on."""

    def __init__(self, core: Any) -> None:
        super().__init__(daemon=True)
        self.core, self.values, self.changed = core, dict[str, str](), threading.Condition()
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            try:
                for event in kubernetes.watch.Watch().stream(self.core.list_namespaced_secret, QUIET,
                                                             timeout_seconds=30):
                    s = event["object"]
                    with self.changed:
                        self.values[s.metadata.name] = base64.b64decode((s.data or {}).get("value", "")).decode()
                        self.changed.notify_all()
            except Exception:  # the API server went away (the end of the bench) or dropped the watch
                time.sleep(0.5)

    def wait_for(self, name: str, value: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.values.get(name) == value, timeout)


def measure(t: Tenants, watch: SecretWatch, quiet: int, seconds: float, rotations: int) -> dict[str, list[float]]:
    """Sync delays (refresh-now and scheduled) and rotation times of the quiet tenant during SECONDS."""
    results: dict[str, list[float]] = {"refresh-now": [], "scheduled": [], "rotation": [], "lost": []}
    end = time.monotonic() + seconds

    def probe(i: int) -> None:
        name, mode = f"q{i}", "refresh-now" if i % 2 else "scheduled"
        rng = random.Random(i)
        in_phase = False  # the first write lands anywhere in the interval: not a sample
        while time.monotonic() < end:
            value = uuid.uuid4().hex
            t.stack.vault_request("POST", f"/v1/secret/data/bench/{QUIET}/{name}", {"data": {"value": value}})
            written = time.monotonic()
            if mode == "refresh-now":
                t.refresh_now(QUIET, name)
            if not watch.wait_for(name, value, 180):
                results["lost"].append(180.0)
            elif mode == "refresh-now":
                results[mode].append(time.monotonic() - written)
                # The next one within its own per-source limit (one per minimum interval, 10 s).
                time.sleep(max(0.0, written + rng.uniform(11, 15) - time.monotonic()))
            elif in_phase:
                # Written just after its last sync wrote the Secret: the next sync is due INTERVAL later.
                results[mode].append(time.monotonic() - written - INTERVAL)
            in_phase = True

    def rotate() -> None:
        for _ in range(rotations):
            before = t.policy_status(QUIET, "q0").get("rotations", 0)
            t.refresh_now(QUIET, "q0", "rotationpolicies", "rotor.dev/rotate-now")
            asked = time.monotonic()
            while time.monotonic() - asked < 300:
                s = t.policy_status(QUIET, "q0")
                if s.get("rotations", 0) > before and s.get("phase") == "Complete":
                    results["rotation"].append(time.monotonic() - asked)
                    break
                time.sleep(0.2)
            time.sleep(max(0.0, min(5.0, end - time.monotonic())))

    threads = [threading.Thread(target=probe, args=(i,), daemon=True) for i in range(1, quiet)]
    threads.append(threading.Thread(target=rotate, daemon=True))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


class Noise:
    """The noisy tenant's loops; counts what each sent."""

    def __init__(self, t: Tenants, noisy: int) -> None:
        self.t, self.noisy, self.stopping = t, noisy, threading.Event()
        self.sent = {"refresh-now": 0, "Secret edits": 0}
        self.threads: list[threading.Thread] = []

    def setup(self) -> None:
        self.t.namespace(NOISY)
        self.t.source(NOISY, "bomb", {"value": "x"}, template={"data": {"x": BOMB}})
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: self.t.source(NOISY, f"n{i}", {"value": f"v{i}"}), range(self.noisy)))

    def start(self) -> None:
        names = ["bomb", *(f"n{i}" for i in range(self.noisy))]
        for k in range(2):
            self._loop(lambda j, k=k: self.t.refresh_now(NOISY, names[(2 * j + k) % len(names)]), "refresh-now")
        self._loop(lambda j: self.t.core.patch_namespaced_secret("n0", NOISY, {"data": {
            "value": base64.b64encode(f"edited-{j}".encode()).decode()}}), "Secret edits")

    def _loop(self, step: Callable[[int], None], what: str) -> None:
        def run() -> None:
            j = 0
            while not self.stopping.is_set():
                try:
                    step(j)
                    self.sent[what] += 1
                except kubernetes.client.ApiException:
                    time.sleep(0.1)  # e.g. the Secret not created yet
                j += 1
        th = threading.Thread(target=run, daemon=True)
        th.start()
        self.threads.append(th)

    def stop(self) -> None:
        self.stopping.set()
        for th in self.threads:
            th.join()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def window(operator: subprocess.Popen[bytes], port: int, run: Callable[[], dict[str, list[float]]]) -> dict[str, Any]:
    """RUN, with the operator's CPU, syncs and drift restores over it and the machine's load."""
    cpu0, t0, m0 = cpu_seconds(operator.pid), time.monotonic(), scrape(port)
    backlog: list[float] = []  # rotor_scheduler_due each second: is Rotor queueing, or are the servers slow?
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            backlog.append(scrape(port).get("rotor_scheduler_due", 0.0))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results: dict[str, Any] = dict(run())
    done.set()
    sampler.join()
    m1, elapsed = scrape(port), time.monotonic() - t0

    def delta(metric: str) -> float:
        return sum(v - m0.get(k, 0.0) for k, v in m1.items() if k.startswith(metric + "{") or k == metric)

    def mean(histogram: str) -> float:
        count = delta(histogram + "_count")
        return delta(histogram + "_sum") / count if count else float("nan")

    results["cpu %"] = 100 * (cpu_seconds(operator.pid) - cpu0) / elapsed
    results["syncs/s (all tenants)"] = delta("rotor_sync_total") / elapsed
    results["sync duration mean s"] = mean("rotor_sync_duration_seconds")
    results["Vault request mean s"] = mean("rotor_backend_request_duration_seconds")
    results["syncs due, waiting (mean)"] = statistics.fmean(backlog) if backlog else float("nan")
    results["syncs due, waiting (max)"] = max(backlog, default=float("nan"))
    results["drift restores"] = delta("rotor_drift_corrections_total")
    results["load average"] = os.getloadavg()[0]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noisy", type=int, default=2000, help="the noisy tenant's sources")
    parser.add_argument("--quiet", type=int, default=10, help="the quiet tenant's sources")
    parser.add_argument("--seconds", type=float, default=120, help="length of each measured window")
    parser.add_argument("--warmup", type=float, default=30, help="seconds of noise before the second window")
    parser.add_argument("--rotations", type=int, default=5, help="rotations per window")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    state = Path(tempfile.mkdtemp(prefix="rotor-bench-fairness-"))
    stack = Stack(state / "devenv", with_postgres=False)
    info = stack.start()
    operator: subprocess.Popen[bytes] | None = None
    noise: Noise | None = None
    watch: SecretWatch | None = None
    rows: dict[str, dict[str, Any]] = {}
    try:
        t = Tenants(stack, client_with_crds(info.kubeconfig))
        t.namespace(QUIET)
        for i in range(args.quiet):
            t.source(QUIET, f"q{i}", {"value": "initial"} if i else {"password": "initial"}, jitter=0.0)
        t.rotation_policy(QUIET, "q0")
        port = free_port()
        env = {**os.environ, "KUBECONFIG": info.kubeconfig, "ROTOR_METRICS_PORT": str(port), "ROTOR_LOG_LEVEL":
               "warning", "ROTOR_VAULT_CONNECTIONS": json.dumps({"default": {"address": info.vault_addr}})}
        operator = subprocess.Popen([sys.executable, "-m", "rotor", "run"], env=env,
                                    stdout=open(state / "operator.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        watch = SecretWatch(t.core)
        watch.start()
        settle(t, args.quiet)
        rows["quiet alone"] = window(operator, port, lambda: measure(t, watch, args.quiet, args.seconds,
                                                                     args.rotations))
        log(f"quiet alone: {summary(rows['quiet alone'])}")
        noise = Noise(t, args.noisy)
        started = time.monotonic()
        noise.setup()
        noise.start()
        log(f"noisy tenant: {args.noisy} sources + bomb created in {time.monotonic() - started:.0f}s; loops running")
        time.sleep(args.warmup)
        rows["beside the noisy tenant"] = window(operator, port, lambda: measure(t, watch, args.quiet, args.seconds,
                                                                                 args.rotations))
        noise.stop()
        ready = t.ready(NOISY)
        rows["beside the noisy tenant"]["noise"] = {**noise.sent, "bomb": ready.get("bomb"),
                                                    "flapping Secret's source": ready.get("n0"),
                                                    "noisy Ready=True": sum(v.startswith("True") for v in
                                                                            ready.values())}
        log(f"beside the noisy tenant: {summary(rows['beside the noisy tenant'])}")
        if operator.poll() is not None:
            log(f"the operator exited ({operator.returncode}) during the benchmark")
    finally:
        if noise is not None:
            noise.stop()
        if watch is not None:
            watch.stopping = True
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
        stack.stop()
    print_table(args, rows)
    return 0


def settle(t: Tenants, quiet: int) -> None:
    """Until the quiet sources are Ready and the policy's first reconcile is over."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready = t.ready(QUIET)
        status = t.policy_status(QUIET, "q0")
        if sum(v == "True/Synced" for v in ready.values()) == quiet and status.get("conditions") and \
                status.get("phase") in (None, "Complete"):
            return
        time.sleep(1)
    raise RuntimeError(f"the quiet tenant did not settle: {t.ready(QUIET)} {t.policy_status(QUIET, 'q0')}")


def stats(values: list[float]) -> str:
    if not values:
        return "-"
    return (f"{statistics.median(values):.2f} / {percentile(values, 99):.2f} / {max(values):.2f} "
            f"(n={len(values)})")


def summary(row: dict[str, Any]) -> dict[str, Any]:
    return {k: stats(v) if isinstance(v, list) else v for k, v in row.items()}


def print_table(args: argparse.Namespace, rows: dict[str, dict[str, Any]]) -> None:
    print(f"\nquiet tenant: {args.quiet} sources every 10s + 1 RotationPolicy; noisy tenant: {args.noisy} sources "
          f"every 10s, refresh-now loop, a managed Secret edited in a loop, a template bomb; "
          f"{args.seconds:.0f}s windows; seconds as p50 / p99 / max")
    names = list(rows)
    lines = [
        ("sync delay, refresh-now", "refresh-now"), ("scheduled sync, late by", "scheduled"),
        ("rotation time (rotate-now)", "rotation"), ("probes not delivered in 180s", "lost"),
    ]
    print(f"{'':<32}" + "".join(f"{n:<40}" for n in names))
    for label, key in lines:
        print(f"{label:<32}" + "".join(f"{stats(rows[n].get(key, [])):<40}" for n in names))
    for key in ("cpu %", "syncs/s (all tenants)", "sync duration mean s", "Vault request mean s",
                "syncs due, waiting (mean)", "syncs due, waiting (max)", "drift restores", "load average"):
        print(f"{'operator ' + key if key == 'cpu %' else key:<32}" +
              "".join(f"{rows[n].get(key, float('nan')):<40.2f}" for n in names))
    for n in names:
        if "noise" in rows[n]:
            print(f"noise sent during '{n}' (incl. warm-up): {rows[n]['noise']}")


if __name__ == "__main__":
    sys.exit(main())
