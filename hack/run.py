"""`make run`: the local control plane, the CRDs, a demo tenant and Rotor in the foreground.

Ctrl-C stops Rotor, then every server; nothing is left running.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

import yaml

from rotor.config import Settings, VaultConnection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the local stack lives in tests/devenv
from tests.devenv import Stack

REPO = Path(__file__).resolve().parents[1]
DEMO = "demo"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, default=REPO / ".devenv")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    args = parser.parse_args()

    stack = Stack(args.state.resolve())
    print("starting etcd, kube-apiserver, Vault and PostgreSQL on loopback ports ...", file=sys.stderr)
    info = stack.start()
    try:
        for name, seconds in stack.timings.items():
            print(f"  {name:<15} ready in {seconds:5.1f}s", file=sys.stderr)
        install(stack)
        os.environ["KUBECONFIG"] = info.kubeconfig  # the operator below talks to this control plane
        print(f"\nexport KUBECONFIG={info.kubeconfig}\n"
              f"  kubectl get secretsources -n {DEMO}; kubectl get secret db-credentials -n {DEMO} -o yaml\n"
              f"Vault: {info.vault_addr} (root token in {info.state_dir}/stack.json)\n", file=sys.stderr)
        from rotor.handlers.app import run

        settings = Settings(vault_connections={"default": VaultConnection(address=info.vault_addr)},
                            log_format=args.log_format, metrics_port=9090, webhook_enabled=True, webhook_port=0)
        # The operator runs in a thread so that Ctrl-C here stops it first, then the servers.
        stop = threading.Event()
        operator = threading.Thread(target=run, args=(settings,), kwargs={"stop_flag": stop}, daemon=True)
        operator.start()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while operator.is_alive() and not stop.is_set():
                operator.join(0.5)
        except KeyboardInterrupt:
            pass
        print("\nstopping Rotor ...", file=sys.stderr)
        stop.set()
        operator.join(30)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the local control plane ...", file=sys.stderr)
        stack.stop()
    return 0


def install(stack: Stack) -> None:
    """CRDs, the demo namespace and its identity in Vault, a secret to deliver, the samples."""
    for path in sorted((REPO / "crds").glob("*.yaml")):
        stack.api_request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                          yaml.safe_load(path.read_text()))
    stack.api_request("POST", "/api/v1/namespaces", {"metadata": {"name": DEMO}})
    stack.api_request("POST", f"/api/v1/namespaces/{DEMO}/serviceaccounts", {"metadata": {"name": "app"}})
    stack.vault_request("PUT", "/v1/sys/policies/acl/demo-app",
                        {"policy": 'path "secret/data/demo/*" { capabilities = ["read"] }'})
    stack.vault_request("POST", "/v1/auth/kubernetes/role/demo-app", {
        "bound_service_account_names": ["app"], "bound_service_account_namespaces": [DEMO],
        "policies": ["demo-app"], "audience": "vault", "ttl": "1h"})
    stack.vault_request("POST", "/v1/secret/data/demo/db",
                        {"data": {"username": "demo_app_owner", "password": secrets.token_urlsafe(24)}})
    import time

    for _ in range(50):  # the CRDs take a moment to be served
        try:
            stack.api_request("GET", "/apis/rotor.dev/v1alpha1/secretsources")
            break
        except RuntimeError:
            time.sleep(0.2)
    plurals = {"SecretSource": "secretsources", "RotationPolicy": "rotationpolicies", "LeakIncident": "leakincidents"}
    for path in sorted((REPO / "samples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "SecretSource":
                stack.api_request("POST", f"/apis/rotor.dev/v1alpha1/namespaces/{DEMO}/{plurals[doc['kind']]}", doc)
            elif doc["kind"] == "Deployment":
                stack.api_request("POST", f"/apis/apps/v1/namespaces/{DEMO}/deployments", doc)
            else:
                continue  # rotation needs a rotator identity with write access; see docs/ for a walkthrough
            print(f"  applied {path.name}: {doc['kind']} {DEMO}/{doc['metadata']['name']}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
