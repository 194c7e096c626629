"""`make run`: the local control plane, the CRDs, the samples in namespace `demo`, and Rotor in the foreground.

Once Rotor is up, the demo (hack/demo.py) tells the story in this terminal: delivery, injection,
a rotation with overlap under a reader's logins, a leak runbook. `--no-demo` (make run DEMO=0) skips
it. Ctrl-C stops Rotor, then every server; nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import socket
import ssl
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rotor.config import Settings, VaultConnection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the local stack lives in tests/devenv
from hack import demo, demo_tenant
from tests.devenv import Stack
from tests.devenv.process import free_port

REPO = Path(__file__).resolve().parents[1]
CRD_PLURALS = ("secretsources", "rotationpolicies", "leakincidents")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, default=REPO / ".devenv")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--no-demo", action="store_true", help="skip the story; only start everything")
    parser.add_argument("--started-at", type=float, default=time.time(),
                        help="when `make run` started (epoch seconds): the demo times the first delivery from it")
    args = parser.parse_args()

    # Rotor's modules load while the servers start: about 2 s of imports off the way to the first secret.
    preload = threading.Thread(target=load_rotor, name="load-rotor", daemon=True)
    preload.start()
    stack = Stack(args.state.resolve())
    say("starting etcd, kube-apiserver, Vault and PostgreSQL on loopback ports ...")
    info = stack.start()
    story: demo.Story | None = None
    try:
        for name, seconds in stack.timings.items():
            say(f"  {name:<15} ready in {seconds:5.1f}s")
        began = time.monotonic()
        install(stack)
        say(f"  {'CRDs, tenant':<15} ready in {time.monotonic() - began:5.1f}s")
        os.environ["KUBECONFIG"] = info.kubeconfig  # the operator below talks to this control plane
        bin_dir = Path(sys.executable).parent
        metrics = metrics_port()
        say(f"\nexport KUBECONFIG={info.kubeconfig} PATH={bin_dir}:$PATH   # rotor, and kubectl rotor\n"
            f"  kubectl get secretsources,rotationpolicies,leakincidents -n {demo_tenant.NAMESPACE}\n"
            f"Vault: {info.vault_addr} (root token in {info.state_dir}/stack.json); PostgreSQL: "
            f"{info.pg_host}:{info.pg_port}; Rotor's metrics: http://127.0.0.1:{metrics}/metrics\n")
        preload.join()
        from rotor.handlers.app import run

        connection = VaultConnection(address=info.vault_addr, audit_log_file=Path(info.vault_audit_log),
                                     login_check_hosts=(f"{info.pg_host}:{info.pg_port}",))
        settings = Settings(vault_connections={"default": connection}, log_format=args.log_format,
                            metrics_port=metrics, webhook_enabled=True, webhook_port=0)
        ready = threading.Event()
        if not args.no_demo:
            story = demo.Story(stack, started_at=args.started_at, operator_ready=ready)
            story.start()
        # A fresh API server takes about 2 s to admit the first Rotor object (of any kind; later ones take
        # milliseconds): the samples go in while Rotor starts.
        threading.Thread(target=apply_samples, args=(stack,), name="apply-samples", daemon=True).start()
        # Rotor runs in the main thread: Ctrl-C (or SIGTERM) stops it gracefully, then the servers.
        asyncio.set_event_loop_policy(_SignalOncePolicy())
        run(settings, ready_flag=ready)
        say("Rotor stopped")
    except KeyboardInterrupt:
        pass
    finally:
        if story is not None:
            story.stop()
        say("stopping the local control plane ...")
        stack.stop()
    return 0


class _SignalOnceLoop(asyncio.SelectorEventLoop):
    """`timeout make run` (or kill -- -PGID) signals the whole process group, and make forwards SIGTERM
    to its children as well: Rotor gets SIGTERM twice. Kopf's handler completes a future, so a second
    one would be logged as an asyncio error; here it is a no-op."""

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:
        def once(*given: Any) -> None:
            with contextlib.suppress(asyncio.InvalidStateError):
                callback(*given)

        super().add_signal_handler(sig, once, *args)


class _SignalOncePolicy(asyncio.DefaultEventLoopPolicy):
    _loop_factory = _SignalOnceLoop


def load_rotor() -> None:
    """Import what `run` and its start-up import (an error surfaces at that import, not here)."""
    for module in ("rotor.handlers.app", "rotor.handlers.delivery", "rotor.handlers.incident",
                   "rotor.handlers.rotation", "rotor.handlers.secretsource", "rotor.wiring"):
        with contextlib.suppress(Exception):
            importlib.import_module(module)


def metrics_port(preferred: int = 9090) -> int:
    """9090 when free (another `make run` may hold it), else any free port."""
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", preferred))
            return preferred
        except OSError:
            return free_port()


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def install(stack: Stack) -> None:
    """CRDs (served before Rotor watches them), namespace `demo` with what the samples need."""
    for path in sorted((REPO / "crds").glob("*.yaml")):
        stack.api_request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                          yaml.safe_load(path.read_text()))
    stack.api_request("POST", "/api/v1/namespaces", {"metadata": {"name": demo_tenant.NAMESPACE}})
    demo_tenant.prepare(stack)  # meanwhile the API server sets up the CRDs' storage
    wait_until_served(stack)


def apply_samples(stack: Stack) -> None:
    """The samples, as `kubectl apply -n demo -f samples/` would; the LeakIncident is left out (the demo
    reports a leak itself when the story gets there)."""
    for kind in ("SecretSource", "Deployment", "RotationPolicy"):  # the one that delivers first
        for name, doc in demo_tenant.samples(kind):
            demo_tenant.apply(stack, doc)
            say(f"  applied samples/{name}: {kind} {demo_tenant.NAMESPACE}/{doc['metadata']['name']}")


def wait_until_served(stack: Stack, timeout: float = 60.0) -> None:
    """Until every CRD's objects can be listed and watched, as Kopf will. Right after a CRD is created
    the API server answers 429 "storage is (re)initializing" for a moment; Kopf retries, but logs each
    attempt as an error."""
    info = stack.info
    context = ssl.create_default_context(cafile=info.ca_file)
    deadline = time.monotonic() + timeout
    for plural in CRD_PLURALS:
        request = urllib.request.Request(f"{info.api_url}/apis/rotor.dev/v1alpha1/{plural}?watch=true"
                                         "&timeoutSeconds=1", headers={"Authorization": f"Bearer {info.admin_token}"})
        while True:
            try:
                stack.api_request("GET", f"/apis/rotor.dev/v1alpha1/{plural}")
                # A watch's status comes with its headers, before any event: no need to read the stream.
                with urllib.request.urlopen(request, timeout=5, context=context) as response:
                    if response.status == 200:
                        break
            except (RuntimeError, OSError):  # 404 until Established, 429 while initializing
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {plural}.rotor.dev not served after {timeout:.0f}s")
            time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
