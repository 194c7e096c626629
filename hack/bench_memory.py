"""`make bench-memory`: Rotor's memory under a 512 MiB limit with large values and forged-label Secrets.

Against the local control plane and Vault: SOURCES SecretSources each reading a 0.9 MiB value from
Vault KV (into a 0.9 MiB Secret), plus FORGED Secrets of 1 MiB a tenant labelled
app.kubernetes.io/managed-by=rotor. Rotor runs as `rotor run` in a memory cgroup of its own limited to
LIMIT MiB (what a pod's memory limit is), when the machine lets this process create one (cgroup v1 or
v2, as root or delegated); otherwise with no limit, its peak measured from /proc/<pid>/status (VmHWM),
and the output says so. Prints: the time until every source is Ready and the peak memory over that and
the SETTLE seconds after (the cgroup's peak covers Rotor and its template children; VmHWM Rotor alone),
and whether the kernel OOM-killed it; then Rotor is started again (after a SIGKILL, or the OOM kill, as a
pod restarts; it re-reads every source at start-up) and the same for the restart. Last, from the API
server's audit log, every list of Secrets with their data Rotor made. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
from bench import cpu_seconds, log, rss_mib, scrape
from bench_backends import VaultBench
from benchstack import client_with_crds, raise_etcd_quota

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.devenv import Stack
from tests.devenv.process import free_port

PER_NAMESPACE = 100
MIB = 1 << 20
SETTLE = 30.0  # seconds Rotor is watched after all Ready: what follows the syncs (status, events) counts


class MemoryCgroup:
    """A child of this process's own memory cgroup with a limit; None from create() when the machine
    does not let this process make one (no cgroup fs, read-only, not delegated)."""

    def __init__(self, path: Path, version: int) -> None:
        self.path, self.version = path, version

    @classmethod
    def create(cls, limit_bytes: int) -> MemoryCgroup | None:
        name = f"rotor-bench-memory-{os.getpid()}"
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, here = line.split(":", 2)
            if "memory" in controllers.split(","):
                base, version = Path("/sys/fs/cgroup/memory") / here.lstrip("/"), 1
                break
        else:
            here = next((ln.split(":", 2)[2] for ln in Path("/proc/self/cgroup").read_text().splitlines()
                         if ln.startswith("0::")), "")
            base, version = Path("/sys/fs/cgroup") / here.lstrip("/"), 2
        try:
            path = base / name
            path.mkdir()
            group = cls(path, version)
            group._write("memory.limit_in_bytes" if version == 1 else "memory.max", str(limit_bytes))
            if version == 2:
                group._write("memory.swap.max", "0")
            return group
        except OSError as exc:
            log(f"no memory cgroup ({exc}): the limit is not enforced")
            return None

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def enter(self) -> None:
        """In the child between fork and exec: this process (Rotor) joins the cgroup."""
        self._write("cgroup.procs", str(os.getpid()))

    def peak_mib(self) -> float:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int(self._read(name)) / MIB
        except OSError:
            return float("nan")  # an older cgroup v2 kernel has no memory.peak

    def reset_peak(self) -> None:
        if self.version == 1:
            self._write("memory.max_usage_in_bytes", "0")

    def oom_kills(self) -> int:
        text = self._read("memory.oom_control" if self.version == 1 else "memory.events")
        return next((int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("oom_kill ")), 0)

    def remove(self) -> None:
        for pid in self._read("cgroup.procs").split():  # only processes this bench started live here
            os.kill(int(pid), signal.SIGKILL)
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=600)
    parser.add_argument("--value-mib", type=float, default=0.9, help="size of each source's Vault value")
    parser.add_argument("--forged", type=int, default=500, help="Secrets a tenant labelled managed-by=rotor")
    parser.add_argument("--forged-mib", type=float, default=1.0)
    parser.add_argument("--limit-mib", type=int, default=512, help="Rotor's memory limit")
    parser.add_argument("--log-level", default="warning", help="Rotor's (its logs: the state directory)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for all Ready, each run")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_etcd_quota(8)
    state = Path(tempfile.mkdtemp(prefix="rotor-bench-memory-"))
    stack = Stack(state / "devenv", with_postgres=False)
    info = stack.start()
    group = MemoryCgroup.create(args.limit_mib * MIB)
    operator: subprocess.Popen[bytes] | None = None
    try:
        backend = VaultBench(stack)
        api = client_with_crds(info.kubeconfig)
        core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        t = time.monotonic()
        setup(backend, core, custom, args)
        log(f"set up {args.sources} sources of {args.value_mib} MiB and {args.forged} forged Secrets of "
            f"{args.forged_mib} MiB in {time.monotonic() - t:.0f}s")
        port = free_port()
        env = {**os.environ, "KUBECONFIG": info.kubeconfig, "ROTOR_METRICS_PORT": str(port), **backend.env(),
               "ROTOR_LOG_LEVEL": args.log_level}
        results: list[dict[str, Any]] = []
        for run in ("first start", "restart"):  # the restart follows a SIGKILL, or the OOM kill
            oom_before = group.oom_kills() if group is not None else 0
            if group is not None:
                group.reset_peak()
            started = time.monotonic()
            # ROTOR_BENCH_OPERATOR: another command line for the operator (as in bench.py).
            command = os.environ.get("ROTOR_BENCH_OPERATOR", f"{sys.executable} -m rotor run").split()
            operator = subprocess.Popen(
                command, env=env, preexec_fn=group.enter if group else None,
                stdout=open(state / f"operator-{len(results)}.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
            result = {"run": run, **wait_all_synced(operator, port, args.sources, started, args.timeout, group)}
            if group is not None:
                result["oom_kills"] = group.oom_kills() - oom_before
            results.append(result)
            log(f"{run}: {result}")
            operator.send_signal(signal.SIGKILL)
            operator.wait()
            operator = None
            if "timed_out_s" in result:
                break  # (a run that died is restarted: what a pod's restart policy does)
    finally:
        if operator is not None:
            operator.kill()
            operator.wait()
        if group is not None:
            group.remove()
        stack.stop()
    print_table(args, group, results)
    print_secret_lists(Path(info.kube_audit_log))
    for data in ("etcd", "vault-data"):  # ~3 GiB; the logs stay
        shutil.rmtree(state / "devenv" / data, ignore_errors=True)
    log(f"logs (operator, API server audit): {state}")
    return 0


def print_secret_lists(audit_log: Path) -> None:
    """Lists of Secrets with their data (not metadata-only Table lists) Rotor made, from the API server's
    audit log: who (user agent), how long each took, and whether it was paginated."""
    lists = []
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        ref, uri = event.get("objectRef") or {}, event.get("requestURI", "")
        if event.get("verb") == "list" and ref.get("resource") == "secrets" and "includeObject=Metadata" not in uri:
            took = (_seconds(event["stageTimestamp"]) - _seconds(event["requestReceivedTimestamp"]))
            lists.append((event.get("userAgent", "").split("/")[0], "limit=" in uri, round(took, 1)))
    print(f"\nLists of Secrets WITH data (the API server's audit log): {len(lists)}")
    for agent, paged in sorted(set((a, p) for a, p, _ in lists)):
        took = [t for a, p, t in lists if (a, p) == (agent, paged)]
        print(f"  {agent} ({'paginated' if paged else 'NOT paginated'}): {len(took)} lists, seconds each: {took}")


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def setup(backend: VaultBench, core: Any, custom: Any, args: argparse.Namespace) -> None:
    sources = [f"mem-{i:03d}" for i in range((args.sources + PER_NAMESPACE - 1) // PER_NAMESPACE)]
    forgers = [f"forge-{i:03d}" for i in range((args.forged + PER_NAMESPACE - 1) // PER_NAMESPACE)]
    for ns in sources + forgers:
        core.create_namespace({"metadata": {"name": ns}})
    for ns in sources:
        core.create_namespaced_service_account(ns, {"metadata": {"name": "app"}})
        backend.prepare(ns)
    value_chars = int(args.value_mib * MIB)

    def source(i: int) -> None:
        ns = sources[i // PER_NAMESPACE]
        # Random, so nothing on the way can compress it; ASCII, so the value is value_chars bytes.
        backend.put(ns, i, secrets.token_urlsafe(value_chars)[:value_chars])
        custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", ns, "secretsources", {
            "apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource", "metadata": {"name": f"s{i}"},
            "spec": {**backend.spec(ns, i), "serviceAccountName": "app", "refresh": {"interval": "1h"}}})

    def forged(i: int) -> None:
        blob = base64.b64encode(os.urandom(int(args.forged_mib * MIB))).decode()
        core.create_namespaced_secret(forgers[i // PER_NAMESPACE], {
            "metadata": {"name": f"forged-{i}", "labels": {"app.kubernetes.io/managed-by": "rotor"}},
            "type": "Opaque", "data": {"blob": blob}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(source, range(args.sources)))
        list(pool.map(forged, range(args.forged)))


def wait_all_synced(operator: subprocess.Popen[bytes], port: int, n: int, started: float, timeout: float,
                    group: MemoryCgroup | None) -> dict[str, Any]:
    """Until this process has synced every source once (its own rotor_sync_total) and its Ready gauge
    counts them all; the figures so far when it dies or the time runs out."""
    result: dict[str, Any] = {}
    last: tuple[float, float] = (0.0, 0.0)
    top = 0.0  # the highest RSS sampled, and when: is the peak start-up, the syncs, or after them?
    while time.monotonic() - started < timeout:
        rss = rss_mib(operator.pid) if operator.poll() is None else 0.0
        if rss > top:
            top = rss
            result["rss_top_sampled"] = f"{rss:.0f} MiB at {time.monotonic() - started:.0f}s, synced/Ready {last}"
        hwm = rss_mib(operator.pid, "VmHWM") if operator.poll() is None else result.get("vmhwm_mib", 0.0)
        result["vmhwm_mib"] = round(max(hwm, result.get("vmhwm_mib", 0.0)), 1)
        if group is not None:
            result["cgroup_peak_mib"] = round(group.peak_mib(), 1)
            result["oom_kills"] = group.oom_kills()
        if operator.poll() is not None:
            result["died_after_s"] = round(time.monotonic() - started, 1)
            result["exit"] = operator.returncode
            result["synced_ready"] = last
            return result
        try:
            metrics = scrape(port)
        except OSError:
            time.sleep(0.5)
            continue
        synced = sum(v for k, v in metrics.items() if k.startswith("rotor_sync_total{"))
        ready = metrics.get('rotor_secretsources{ready="True",reason="Synced"}', 0.0)
        last = (synced, ready)
        if synced >= n and ready >= n:
            result["ready_s"] = round(time.monotonic() - started, 1)
            result["cpu_s"] = round(cpu_seconds(operator.pid), 1)
            result["rss_mib_ready"] = round(rss_mib(operator.pid), 1)
            ready_at, at_ready = time.monotonic(), metrics
            while time.monotonic() - ready_at < SETTLE:  # what comes after the last sync still counts
                time.sleep(0.2)
                if operator.poll() is not None:
                    result["died_after_ready_s"] = round(time.monotonic() - ready_at, 1)
                    result["exit"] = operator.returncode
                    break
                result["vmhwm_mib"] = max(result["vmhwm_mib"], round(rss_mib(operator.pid, "VmHWM"), 1))
                if rss_mib(operator.pid) > top:
                    top = rss_mib(operator.pid)
                    result["rss_top_sampled"] = f"{top:.0f} MiB {time.monotonic() - ready_at:.1f}s after all Ready"
            if group is not None:
                result["cgroup_peak_mib"] = round(group.peak_mib(), 1)
            if operator.poll() is None:  # what Rotor asked the API server after the syncs
                after = scrape(port)
                result["kube_requests_after_ready"] = {
                    k.removeprefix("rotor_kube_requests_total"): round(v - at_ready.get(k, 0.0))
                    for k, v in after.items() if k.startswith("rotor_kube_requests_total{") and
                    v > at_ready.get(k, 0.0)}
            return result
        time.sleep(0.5)
    result["timed_out_s"] = timeout
    result["synced_ready"] = last
    return result


def print_table(args: argparse.Namespace, group: MemoryCgroup | None, results: list[dict[str, Any]]) -> None:
    limit = (f"{args.limit_mib} MiB memory cgroup (v{group.version}), Rotor + its template children"
             if group else "NOT enforced (no writable memory cgroup): peak from VmHWM only")
    print(f"\n{args.sources} SecretSources x {args.value_mib} MiB (Vault KV) + {args.forged} forged-label "
          f"Secrets x {args.forged_mib} MiB; limit: {limit}")
    print(f"{'run':<24}{'all Ready s':>12}{'CPU s':>8}{'RSS at Ready':>14}{'peak VmHWM':>12}"
          f"{'cgroup peak':>13}{'OOM kills':>11}")
    for r in results:
        ready = r.get("ready_s", "died" if "died_after_s" in r else "timeout")
        print(f"{r['run']:<24}{ready!s:>12}{r.get('cpu_s', '-')!s:>8}{r.get('rss_mib_ready', '-')!s:>14}"
              f"{r['vmhwm_mib']!s:>12}{r.get('cgroup_peak_mib', '-')!s:>13}{r.get('oom_kills', '-')!s:>11}")
        print(f"  {r['run']}: highest RSS sampled: {r.get('rss_top_sampled', '-')}")
        if "ready_s" not in r:
            print(f"  {r['run']}: NOT all Ready: {r}")
        elif "died_after_ready_s" in r:
            print(f"  {r['run']}: DIED {r['died_after_ready_s']}s after all Ready (exit {r['exit']}; "
                  f"OOM kills {r.get('oom_kills', '-')})")
    print("(MiB; all Ready = this process synced every source once and its Ready gauge counts them all; "
          f"peaks include the {SETTLE:.0f}s after)")


if __name__ == "__main__":
    sys.exit(main())
