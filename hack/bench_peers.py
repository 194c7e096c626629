"""`make bench-peers N=1000`: Rotor side by side with External Secrets Operator and Vault Secrets Operator.

Each contender (Rotor; each peer that hack/peers.sh built, at its default flags and at tuned flags) gets a
fresh local stack (etcd + kube-apiserver + Vault) with the same N KV v2 secrets in the same namespaces
(100 per namespace, each namespace its own Vault Kubernetes-auth role), runs as a local process with the
stack's kubeconfig, and is measured from the outside only, the same way for all:

- cold start: seconds from the operator's start until all N target Secrets hold the right value (one
  watch on Secrets in the bench process);
- one refresh cycle with nothing changed: Kubernetes requests and writes (kube-apiserver's audit log,
  less the bench's own and the API server's), Vault requests and logins (Vault's file audit log),
  counted over 1.15 refresh intervals and scaled to one interval; CPU over the same window;
- RSS of the operator (VmRSS when idle, VmHWM peak), CPU seconds of the operator, kube-apiserver, etcd
  and Vault (/proc/<pid>/stat: each process's own accounting);
- propagation: PROBES Vault writes spread over one refresh interval (at moments shuffled among the
  probed secrets), time until each target Secret holds the new value; and the median time between two
  Vault reads of one secret (from Vault's audit log over the idle cycle and the probes), because a
  poller that reads more often than its interval says propagates sooner for that many more reads.

"Rotor, change feed" is Rotor with the opt-in change feed (Vault's socket audit device streaming to it,
polling as its backstop); the peers have no equivalent on Vault Community Edition.

Prints one table (Rotor's ratio to each peer after its figure: below 1x means Rotor needs less) and
writes bench-results/peers-N.json. Figures, not pass/fail: this is a benchmark.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from bench_backends import VaultBench
from bench_feed import Feed
from bench_peers_table import table
from peers_contenders import ESO_VERSION, VSO_NAMESPACE, VSO_VERSION, Contender, contenders

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the local stack lives in tests/devenv
from tests.devenv import Stack
from tests.devenv.process import Process, free_port

REPO = Path(__file__).resolve().parents[1]
PER_NAMESPACE = 100
BENCH_AGENT = "rotor-bench-peers"
STACK = ("kube-apiserver", "etcd", "vault")
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--interval", default=None, help="refresh interval (default: 60s per 1,000 secrets)")
    parser.add_argument("--probes", type=int, default=50, help="secrets whose Vault value changes")
    parser.add_argument("--only", default="",
                        help="comma-separated contenders (rotor,rotor-feed,eso,eso-tuned,vso,vso-tuned)")
    parser.add_argument("--cold-timeout", type=float, default=None, help="give up on a cold start after this long")
    parser.add_argument("--out", default=str(REPO / "bench-results"), help="directory for peers-N.json")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other contenders already in peers-N.json (re-run one, or add a peer later)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed bench still stops its servers
    n = args.sources
    interval = args.interval or f"{max(60, n * 60 // 1000)}s"
    runs, missing = contenders([k for k in args.only.split(",") if k] or None)
    for reason in missing:
        log(f"skipping: {reason}")
    results: dict[str, Any] = {"sources": n, "refresh_interval_s": seconds(interval), "probes": min(args.probes, n),
                               "versions": {"eso": ESO_VERSION, "vso": VSO_VERSION}, "missing": missing,
                               "flags": {c.key: c.flags for c in runs}, "contenders": {}}
    for contender in runs:
        log(f"--- {contender.label}")
        results["contenders"][contender.key] = run_one(contender, n, interval, args.probes, args.cold_timeout)
    out = Path(args.out) / f"peers-{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge and out.exists():
        earlier = json.loads(out.read_text())
        results["contenders"] = {**earlier["contenders"], **results["contenders"]}
        results["flags"] = {**earlier["flags"], **results["flags"]}
        ran = {key.split("-")[0] for key in results["contenders"]}
        results["missing"] = [m for m in results["missing"] if not (
            ("eso" in ran and m.startswith("External")) or ("vso" in ran and m.startswith("Vault")))]
        order = ["rotor", "rotor-feed", "eso", "eso-tuned", "vso", "vso-tuned"]
        results["contenders"] = dict(sorted(results["contenders"].items(), key=lambda kv: order.index(kv[0])))
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


def log(message: str) -> None:
    print(f"bench-peers: {message}", file=sys.stderr, flush=True)


def seconds(duration: str) -> float:
    return float(duration.rstrip("s"))


def run_one(contender: Contender, n: int, interval: str, probes: int, cold_timeout: float | None) -> dict[str, Any]:
    namespaces = [f"bench-{i:03d}" for i in range((n + PER_NAMESPACE - 1) // PER_NAMESPACE)]
    state = Path(tempfile.mkdtemp(prefix=f"rotor-bench-peers-{contender.key}-"))
    stack = Stack(state / "devenv", with_postgres=False)
    info = stack.start()
    operator: Process | None = None
    watcher: SecretWatcher | None = None
    result: dict[str, Any] = {"label": contender.label, "flags": contender.flags}
    try:
        vault = VaultBench(stack)
        api = client(info.kubeconfig)
        install_crds(api, contender.crds)
        setup(api, vault, contender, namespaces, n, interval, info.vault_addr)
        watcher = SecretWatcher(client(info.kubeconfig), {(namespaces[i // PER_NAMESPACE], f"s{i}"): f"v0-{i}"
                                                          for i in range(n)})
        vault_env = vault.env()
        feed = Feed(stack, state) if contender.feed else None
        if feed is not None:
            vault_env["ROTOR_VAULT_CONNECTIONS"] = feed.configure(vault_env["ROTOR_VAULT_CONNECTIONS"])
        argv, env = contender.command(vault_env, (free_port(), free_port()))
        pids = {name: pid_of(stack.procs[name]) for name in STACK}
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        operator = Process(contender.key, argv, state / "devenv" / "logs", env={"KUBECONFIG": info.kubeconfig, **env})
        started = time.monotonic()
        operator.start()
        if feed is not None:  # as soon as Rotor listens, as hack/bench.py --feed on does
            threading.Thread(target=feed.enable, daemon=True).start()
        pids["operator"] = pid_of(operator)
        cpu0["operator"] = 0.0
        deadline = cold_timeout or max(300.0, n * 0.6)
        if not watcher.wait_all_right(deadline, operator):
            raise RuntimeError(f"{contender.label}: {watcher.right()} of {n} Secrets right after {deadline:.0f}s; "
                               f"operator log:\n{operator.tail()}")
        result["cold_start_s"] = round(watcher.all_right_at - started, 1)
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        result["cold_cpu_s"] = {k: round(cpu1[k] - cpu0[k], 1) for k in cpu1}
        result["rss_mib_all_right"] = round(rss_mib(pids["operator"]), 1)
        log(f"all {n} Secrets right {result['cold_start_s']}s after the operator started")

        time.sleep(5)
        vault_log = Path(stack.info.vault_audit_log)
        reads_from = vault_log.stat().st_size
        result.update(idle_cycle(stack, pids, seconds(interval)))
        if feed is not None:
            result["feed_enabled_after_s"] = feed.enabled_after
        result["rss_mib_peak"] = round(rss_mib(pids["operator"], "VmHWM"), 1)
        delays = propagation(vault, watcher, namespaces, n, min(probes, n), seconds(interval))
        result["propagation_p50_s"] = round(statistics.median(delays), 2) if delays else None
        result["propagation_p99_s"] = round(percentile(delays, 99), 2) if delays else None
        result["propagated"] = f"{len(delays)}/{min(probes, n)}"
        result["read_gap_p50_s"], result["read_gaps"] = read_gap(vault_log, reads_from, seconds(interval))
        cpu2 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        result["total_cpu_s"] = {k: round(cpu2[k] - cpu0[k], 1) for k in cpu2}
        if not operator.alive():
            raise RuntimeError(f"{contender.label} exited during the run:\n{operator.tail()}")
    except BaseException:
        log(f"{contender.label} failed; logs kept in {state / 'devenv' / 'logs'}")
        raise
    else:
        shutil.rmtree(state, ignore_errors=True)
    finally:
        if watcher is not None:
            watcher.stop()
        if operator is not None:
            operator.stop(30)
        stack.stop()
    return result


def client(kubeconfig: str) -> kubernetes.client.ApiClient:
    """The bench's own client: its user agent keeps its requests out of the operator's counts."""
    api = kubernetes.config.new_client_from_config(config_file=kubeconfig)
    api.configuration.connection_pool_maxsize = 32
    api.user_agent = BENCH_AGENT
    return api


def install_crds(api: kubernetes.client.ApiClient, paths: list[Path]) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(api)
    names = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                ext.create_custom_resource_definition(doc)
                names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        established = 0
        for name in names:
            status = ext.read_custom_resource_definition(name).status
            established += any(c.type == "Established" and c.status == "True" for c in (status.conditions or []))
        if established == len(names):
            time.sleep(1)  # served by the discovery cache too
            return
        time.sleep(0.5)
    raise TimeoutError("CRDs not established within 60s")


def setup(api: kubernetes.client.ApiClient, vault: VaultBench, contender: Contender, namespaces: list[str], n: int,
          interval: str, vault_addr: str) -> None:
    core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    began = time.monotonic()
    if contender.kind == "vso":
        core.create_namespace({"metadata": {"name": VSO_NAMESPACE}})
    for ns in namespaces:
        core.create_namespace({"metadata": {"name": ns}})
        core.create_namespaced_service_account(ns, {"metadata": {"name": "app"}})
        vault.prepare(ns)
        for group, version, plural, body in contender.namespace_objects(ns, vault_addr):
            custom.create_namespaced_custom_object(group, version, ns, plural, body)

    def one(i: int) -> None:
        ns = namespaces[i // PER_NAMESPACE]
        vault.put(ns, i, f"v0-{i}")
        group, version, plural, body = contender.secret_object(ns, i, interval)
        custom.create_namespaced_custom_object(group, version, ns, plural, body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))
    log(f"{n} secrets and their objects in {len(namespaces)} namespaces in {time.monotonic() - began:.1f}s")


class SecretWatcher:
    """One watch on every Secret: which target Secrets hold which value, and since when."""

    def __init__(self, api: kubernetes.client.ApiClient, expected: dict[tuple[str, str], str]) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.expected = dict(expected)
        self.values: dict[tuple[str, str], str] = {}
        self.changed_at: dict[tuple[str, str], float] = {}
        self.all_right_at = 0.0
        self.lock = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        version = ""
        while not self.stopping:
            w = kubernetes.watch.Watch()
            try:
                for event in w.stream(self.core.list_secret_for_all_namespaces, timeout_seconds=60,
                                      resource_version=version, allow_watch_bookmarks=False):
                    if self.stopping:
                        w.stop()
                        break
                    secret = event["object"]
                    version = secret.metadata.resource_version
                    key = (secret.metadata.namespace, secret.metadata.name)
                    if key not in self.expected:
                        continue
                    raw = (secret.data or {}).get("value")
                    value = base64.b64decode(raw).decode() if raw and event["type"] != "DELETED" else ""
                    with self.lock:
                        if self.values.get(key) != value:
                            self.values[key] = value
                            self.changed_at[key] = time.monotonic()
                        self.lock.notify_all()
            except kubernetes.client.ApiException as exc:
                if exc.status == 410:
                    version = ""  # expired: list again
                else:
                    time.sleep(0.5)
            except Exception:  # a connection reset: resume from the last version
                time.sleep(0.5)

    def right(self) -> int:
        return sum(1 for k, v in self.expected.items() if self.values.get(k) == v)

    def wait_all_right(self, timeout: float, operator: Process) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.right() < len(self.expected):
                if time.monotonic() > deadline or not operator.alive():
                    return False
                self.lock.wait(0.5)
            self.all_right_at = max(self.changed_at[k] for k in self.expected)
        return True

    def stop(self) -> None:
        self.stopping = True


def idle_cycle(stack: Stack, pids: dict[str, int], interval: float) -> dict[str, Any]:
    """Requests and CPU over 1.15 refresh intervals with nothing changed, scaled to one interval."""
    kube_log, vault_log = Path(stack.info.kube_audit_log), Path(stack.info.vault_audit_log)
    offsets = (kube_log.stat().st_size, vault_log.stat().st_size)
    cpu0, t0 = {k: cpu_seconds(p) for k, p in pids.items()}, time.monotonic()
    time.sleep(interval * 1.15)
    cpu1, window = {k: cpu_seconds(p) for k, p in pids.items()}, time.monotonic() - t0
    time.sleep(1)  # audit entries of the window's last requests
    scale = interval / window
    kube = kube_counts(kube_log, offsets[0])
    vault = vault_counts(vault_log, offsets[1])
    return {
        "cycle_window_s": round(window, 1),
        "rss_mib_idle": round(rss_mib(pids["operator"]), 1),
        "cycle_kube_requests": round(kube["requests"] * scale),
        "cycle_kube_writes": round(kube["writes"] * scale),
        "cycle_kube_by_verb": {k: round(v * scale) for k, v in sorted(kube["by_verb"].items())},
        "cycle_vault_requests": round(vault["requests"] * scale),
        "cycle_vault_reads": round(vault["reads"] * scale),
        "cycle_vault_logins": round(vault["logins"] * scale),
        "cycle_secrets_read": vault["distinct_reads"],
        "cycle_cpu_s": {k: round((cpu1[k] - cpu0[k]) * scale, 2) for k in cpu1},
    }


def audit_lines(path: Path, offset: int) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        f.seek(offset)
        raw = f.read()
    entries = []
    for line in raw.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line still being written
    return entries


def kube_counts(path: Path, offset: int) -> dict[str, Any]:
    """Requests the operator caused: every completed request but the bench's and the API server's own
    (Vault's TokenReviews count: the operator's logins cause them)."""
    requests, writes, by_verb = 0, 0, {}
    for e in audit_lines(path, offset):
        if e.get("stage") != "ResponseComplete" or (e.get("userAgent") or "").startswith(BENCH_AGENT):
            continue
        if e.get("user", {}).get("username") == "system:apiserver":
            continue
        verb = e.get("verb", "")
        resource = (e.get("objectRef") or {}).get("resource", "")
        sub = (e.get("objectRef") or {}).get("subresource", "")
        name = f"{verb} {resource}{'/' + sub if sub else ''}"
        by_verb[name] = by_verb.get(name, 0) + 1
        requests += 1
        writes += verb in WRITES
    return {"requests": requests, "writes": writes, "by_verb": by_verb}


def vault_counts(path: Path, offset: int) -> dict[str, Any]:
    requests = reads = logins = 0
    paths: set[str] = set()
    for e in audit_lines(path, offset):
        if e.get("type") != "response":
            continue
        if (e.get("auth") or {}).get("display_name") == "root":
            continue  # the bench itself
        request_path = (e.get("request") or {}).get("path", "")
        requests += 1
        if request_path.startswith("auth/kubernetes/login"):
            logins += 1
        elif request_path.startswith("secret/data/bench/"):
            reads += 1
            paths.add(request_path)
    return {"requests": requests, "reads": reads, "logins": logins, "distinct_reads": len(paths)}


def propagation(vault: VaultBench, watcher: SecretWatcher, namespaces: list[str], n: int, probes: int,
                interval: float) -> list[float]:
    """Change PROBES Vault values, spread evenly over one refresh interval; seconds until each target Secret
    holds the new value. Spread, because an operator that polls refreshes its secrets in step after a cold
    start: writes made all at once measured how far that step happened to be from the moment of the
    writes (one operator's p50 moved between 29 and 41 s from run to run), not what a write at any moment
    waits for."""
    chosen = list(range(0, n, max(1, n // probes)))[:probes]
    # Moments shuffled among the probed secrets (seeded: every contender gets the same order): in creation
    # order they would follow each poller's own refresh order after its cold start.
    random.Random(n).shuffle(chosen)
    written: dict[tuple[str, str], float] = {}
    start = time.monotonic()
    for k, i in enumerate(chosen):
        time.sleep(max(0.0, start + k * interval / len(chosen) - time.monotonic()))
        ns = namespaces[i // PER_NAMESPACE]
        watcher.expected[(ns, f"s{i}")] = f"v1-{i}"
        vault.put(ns, i, f"v1-{i}")
        written[(ns, f"s{i}")] = time.monotonic()
    deadline = time.monotonic() + interval * 3
    with watcher.lock:
        while time.monotonic() < deadline:
            if all(watcher.values.get(k) == watcher.expected[k] for k in written):
                break
            watcher.lock.wait(0.5)
        delays = [watcher.changed_at[k] - t for k, t in written.items()
                  if watcher.values.get(k) == watcher.expected[k]]
    if len(delays) < len(written):
        log(f"only {len(delays)} of {len(written)} changes propagated within {interval * 3:.0f}s")
    return delays


def read_gap(path: Path, offset: int, interval: float) -> tuple[float | None, int]:
    """The median time between two Vault reads of one secret, and how many gaps it is taken from, over the
    idle cycle and the propagation probes (about three intervals): how often each secret is really read,
    whatever the refresh interval says. Only a secret's first read in the window's head (all but its last
    1.5 intervals) counts, with the read after it: every gap up to 1.5 intervals is then seen, so the
    median is not biased towards short gaps. None when no secret is read twice (the change feed)."""
    reads: dict[str, list[float]] = {}
    for e in audit_lines(path, offset):
        request = e.get("request") or {}
        if e.get("type") != "response" or (e.get("auth") or {}).get("display_name") == "root":
            continue
        if request.get("path", "").startswith("secret/data/bench/") and e.get("time"):
            reads.setdefault(request["path"], []).append(audit_time(e["time"]))
    if not reads:
        return None, 0
    end = max(t for times in reads.values() for t in times)
    gaps = []
    for times in reads.values():
        times.sort()
        if times[0] < end - 1.5 * interval:
            gaps.append(times[1] - times[0] if len(times) > 1 else float("inf"))
    median = statistics.median(gaps) if gaps else float("inf")
    return (round(median, 1) if median != float("inf") else None), len(gaps)


def audit_time(stamp: str) -> float:
    """Seconds since the epoch of an audit entry's RFC 3339 time (Vault's carry nanoseconds)."""
    head, _, rest = stamp.rstrip("Z").partition(".")
    fraction = float(f"0.{rest}") if rest else 0.0
    return datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC).timestamp() + fraction


def pid_of(proc: Process) -> int:
    assert proc.popen is not None
    return proc.popen.pid


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
