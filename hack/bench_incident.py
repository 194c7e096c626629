"""LeakIncident time-to-revoke: one incident, then 100 concurrent ones, against the local stack.

Each secret is a Vault KV v2 secret behind a SecretSource and a versioned RotationPolicy; each
incident is `order: immediate` (nothing consumes the secrets here), so revocation means: the policy
publishes a replacement, Rotor destroys the exposed version. Times are from the incident's own
status (detectedAt is set by this script at creation, in milliseconds). Rotor runs as a separate
process (`rotor run`). Figures, not pass/fail: this is a benchmark.

    .venv/bin/python hack/bench_incident.py [--concurrent 100]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
from benchstack import client_with_crds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the local stack lives in tests/devenv
from tests.devenv import Stack

from rotor.planning.times import parse as parse_time

REPO = Path(__file__).resolve().parents[1]
NS = "bench-incidents"
G, V = "rotor.dev", "v1alpha1"


def log(message: str) -> None:
    print(f"[bench-incident] {message}", file=sys.stderr, flush=True)


def now_ms() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def setup(stack: Stack, core: Any, custom: Any, count: int) -> None:
    core.create_namespace({"metadata": {"name": NS}})
    for sa in ("app", "rotator"):
        core.create_namespaced_service_account(NS, {"metadata": {"name": sa}})
    stack.vault_request("PUT", f"/v1/sys/policies/acl/{NS}-app",
                        {"policy": f'path "secret/data/{NS}/*" {{ capabilities = ["read"] }}'})
    stack.vault_request("PUT", f"/v1/sys/policies/acl/{NS}-rotator", {"policy": "\n".join([
        f'path "secret/data/{NS}/*" {{ capabilities = ["create", "update", "read"] }}',
        f'path "secret/metadata/{NS}/*" {{ capabilities = ["create", "update", "read"] }}',
        f'path "secret/destroy/{NS}/*" {{ capabilities = ["update"] }}'])})
    for who in ("app", "rotator"):
        stack.vault_request("POST", f"/v1/auth/kubernetes/role/{NS}-{who}", {
            "bound_service_account_names": [who], "bound_service_account_namespaces": [NS],
            "policies": [f"{NS}-{who}"], "audience": "vault", "ttl": "1h"})

    def one(i: int) -> None:
        name = f"s{i:03d}"
        stack.vault_request("POST", f"/v1/secret/data/{NS}/{name}", {"data": {"password": uuid.uuid4().hex}})
        custom.create_namespaced_custom_object(G, V, NS, "secretsources", {
            "apiVersion": f"{G}/{V}", "kind": "SecretSource", "metadata": {"name": name},
            "spec": {"provider": "vault", "serviceAccountName": "app", "vault": {"path": f"{NS}/{name}",
                                                                                 "role": f"{NS}-app"}}})
        custom.create_namespaced_custom_object(G, V, NS, "rotationpolicies", {
            "apiVersion": f"{G}/{V}", "kind": "RotationPolicy", "metadata": {"name": name},
            "spec": {"secretSourceRef": {"name": name}, "strategy": "versioned", "schedule": {"interval": "720h"},
                     "identity": {"serviceAccountName": "rotator", "role": f"{NS}-rotator"},
                     "overlap": {"window": "1s"}, "verify": {"timeout": "1m"}, "deadline": "5m"}})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


def wait(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.25)


def ready_count(custom: Any) -> int:
    items = custom.list_namespaced_custom_object(G, V, NS, "secretsources")["items"]
    return sum(1 for s in items if any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in (s.get("status") or {}).get("conditions") or []))


def report(custom: Any, names: list[str]) -> None:
    def create(name: str) -> None:
        custom.create_namespaced_custom_object(G, V, NS, "leakincidents", {
            "apiVersion": f"{G}/{V}", "kind": "LeakIncident", "metadata": {"name": f"leak-{name}"},
            "spec": {"secretSourceRef": {"name": name}, "response": {"order": "immediate"},
                     "exposure": {"where": "ci-logs", "reference": "bench", "detectedAt": now_ms()}}})

    with ThreadPoolExecutor(min(32, len(names))) as pool:
        list(pool.map(create, names))


def revoked(custom: Any, names: list[str]) -> dict[str, dict[str, str]]:
    items = custom.list_namespaced_custom_object(G, V, NS, "leakincidents")["items"]
    wanted = {f"leak-{n}" for n in names}
    return {i["metadata"]["name"]: (i.get("status") or {}).get("timestamps") or {} for i in items
            if i["metadata"]["name"] in wanted and ((i.get("status") or {}).get("timestamps") or {}).get("revoked")}


def seconds(stamps: dict[str, str], phase: str) -> float:
    return (parse_time(stamps[phase]) - parse_time(stamps["detected"])).total_seconds()


def summary(found: dict[str, dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"incidents": len(found)}
    for phase in ("contained", "revoked"):
        values = sorted(seconds(s, phase) for s in found.values())
        out[f"time_to_{phase[:-2] if phase == 'contained' else 'revoke'}_s"] = {
            "p50": round(statistics.median(values), 3),
            "p95": round(values[min(len(values) - 1, int(len(values) * 0.95))], 3),
            "max": round(values[-1], 3)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrent", type=int, default=100)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="rotor-bench-incident-"))
    stack = Stack(state / "devenv", with_postgres=False)
    info = stack.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        api = client_with_crds(info.kubeconfig)
        core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
        count = args.concurrent + 1
        setup(stack, core, custom, count)
        env = {**os.environ, "KUBECONFIG": info.kubeconfig, "ROTOR_METRICS_PORT": "0", "ROTOR_LOG_LEVEL": "warning",
               "ROTOR_VAULT_CONNECTIONS": json.dumps({"default": {
                   "address": info.vault_addr, "rate_per_second": 1000, "max_concurrency": 32,
                   "audit_log_file": info.vault_audit_log}})}
        operator = subprocess.Popen([sys.executable, "-m", "rotor", "run"], env=env,
                                    stdout=open(state / "operator.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        wait("sources Ready", lambda: ready_count(custom) == count, 300)
        log(f"{count} SecretSources with RotationPolicies Ready")

        single = ["s000"]
        report(custom, single)
        wait("one incident revoked", lambda: len(revoked(custom, single)) == 1, 120)
        one = summary(revoked(custom, single))
        log(f"one incident: {one}")

        many = [f"s{i:03d}" for i in range(1, count)]
        started = time.monotonic()
        report(custom, many)
        wait(f"{len(many)} incidents revoked", lambda: len(revoked(custom, many)) == len(many), 600)
        wall = time.monotonic() - started
        concurrent = {**summary(revoked(custom, many)), "all_revoked_wall_s": round(wall, 2)}
        log(f"{len(many)} concurrent incidents: {concurrent}")
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
        stack.stop()

    results = {"one": one, "concurrent": concurrent}
    out = REPO / "bench-results" / "incident.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\n{'scenario':<28}{'contain p50':>12}{'revoke p50':>12}{'revoke p95':>12}{'revoke max':>12}")
    for label, row in (("1 incident", one), (f"{len(many)} concurrent incidents", concurrent)):
        print(f"{label:<28}{row['time_to_contain_s']['p50']:>11.3f}s{row['time_to_revoke_s']['p50']:>11.3f}s"
              f"{row['time_to_revoke_s']['p95']:>11.3f}s{row['time_to_revoke_s']['max']:>11.3f}s")
    print(f"(all {len(many)} revoked {concurrent['all_revoked_wall_s']}s after the first was reported; "
          f"results in {out.relative_to(REPO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
