"""Helpers for the packaging and HA tests: render the chart with the real helm, apply it to the real
kube-apiserver (server-side apply), and run Rotor as separate OS processes under the chart's
ServiceAccount, each with its own token.

These tests start a control plane of their own (once per session, shared by every test that uses
it): they attribute each API call in the audit log to a replica and count writes, which the session's
in-process operator (standalone, watching every namespace) would otherwise share.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.dynamic import DynamicClient

from tests.devenv import Stack, binaries
from tests.devenv.stack import ISSUER

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "rotor"
RELEASE, RELEASE_NAMESPACE = "rotor", "rotor-system"
FIELD_MANAGER = "rotor-chart-test"

_stack: Stack | None = None


def isolated_stack(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """One extra control plane (no PostgreSQL) for this session, stopped when the session ends."""
    global _stack
    if _stack is None:
        stack = Stack(tmp_path_factory.mktemp("packaging-devenv"), with_postgres=False)
        stack.start()
        config.add_cleanup(stack.stop)
        _stack = stack
    return _stack


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the testbin's helm (a missing binary fails the test: `make testbin` builds it)."""
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/rotor-helm/cache", "HELM_CONFIG_HOME": "/tmp/rotor-helm/config",
           "HELM_DATA_HOME": "/tmp/rotor-helm/data"}
    env.pop("KUBECONFIG", None)  # `helm template` must not depend on a cluster
    result = subprocess.run([str(binaries.find("helm")), *args], capture_output=True, text=True, env=env,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def render(*set_args: str, include_crds: bool = True, api_versions: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """`helm template` of charts/rotor as release rotor in rotor-system, parsed."""
    args = ["template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE]
    if include_crds:
        args.append("--include-crds")
    for api in api_versions:
        args += ["--api-versions", api]
    for item in set_args:
        args += ["--set", item]
    docs = [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def apply(api: kubernetes.client.ApiClient, docs: list[dict[str, Any]], *, dry_run: bool = False) -> list[Any]:
    """Server-side apply, CRDs first (waiting until they are served), then everything else."""
    dynamic = DynamicClient(api)
    crds = of_kind(docs, "CustomResourceDefinition")
    applied = [_apply_one(dynamic, d, dry_run) for d in crds]
    if crds and not dry_run:
        for crd in crds:
            _wait_established(api, crd["metadata"]["name"])
        dynamic = DynamicClient(api)  # rediscover: the new kinds are served now
    applied += [_apply_one(dynamic, d, dry_run) for d in docs if d["kind"] != "CustomResourceDefinition"]
    return applied


def _apply_one(dynamic: DynamicClient, doc: dict[str, Any], dry_run: bool) -> Any:
    resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": True}
    if dry_run:
        kwargs["dry_run"] = "All"
    namespace = doc["metadata"].get("namespace") if resource.namespaced else None
    return dynamic.server_side_apply(resource, body=doc, name=doc["metadata"]["name"], namespace=namespace,
                                     **kwargs)


def _wait_established(api: kubernetes.client.ApiClient, name: str, timeout: float = 30) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {name} not established after {timeout}s")


def ensure_namespace(core: kubernetes.client.CoreV1Api, name: str) -> None:
    try:
        core.create_namespace({"metadata": {"name": name}})
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise


def service_account_kubeconfig(stack: Stack, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig that authenticates as NAMESPACE/NAME with a TokenRequest token (not the admin's)."""
    token = stack.service_account_token(namespace, name, ISSUER, seconds=3600)
    info = stack.info
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": "local", "cluster": {"server": info.api_url, "certificate-authority": info.ca_file}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}],
    }))
    path.chmod(0o600)
    return path


def operator_config(docs: list[dict[str, Any]]) -> str:
    """The operator's config file exactly as the chart renders it into its ConfigMap."""
    (config_map,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-config")]
    return str(config_map["data"]["config.yaml"])


@dataclass
class OperatorProcess:
    """`python -m rotor run` as its own OS process (what the container runs), logging to a file."""

    name: str
    kubeconfig: Path
    config_file: Path
    log_path: Path
    extra_env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTOR_")}
        env.update({"KUBECONFIG": str(self.kubeconfig), "POD_ID": self.name, "HOSTNAME": self.name,
                    **self.extra_env})
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "rotor", "run", "--config", str(self.config_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(REPO))
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 60) -> float:
        """Seconds until TEXT appears in the log (fails if the process dies first)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if text in self.log():
                return time.monotonic() - start
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.popen and self.popen.returncode}):\n{self.tail()}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {text!r} in the log after {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye in the peering object (a node loss, an OOM kill)."""
        if self.popen is not None and self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.popen is None or not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


def install_chart(stack: Stack, *values: str) -> list[dict[str, Any]]:
    """What `helm install` would create, applied server-side (the Deployment as a dry run: no kubelet)."""
    admin = kubernetes.config.new_client_from_config(config_file=stack.info.kubeconfig)
    docs = render(f"vaultConnections.default.address={stack.info.vault_addr}", *values)
    ensure_namespace(kubernetes.client.CoreV1Api(admin), RELEASE_NAMESPACE)
    apply(admin, [d for d in docs if d["kind"] != "Deployment"])
    apply(admin, of_kind(docs, "Deployment"), dry_run=True)
    return docs


def chart_operator(stack: Stack, docs: list[dict[str, Any]], workdir: Path, name: str,
                   **env: str) -> OperatorProcess:
    """Rotor as the chart runs it: its rendered config file, its ServiceAccount's own token."""
    config = workdir / "config.yaml"
    config.write_text(operator_config(docs))
    kubeconfig = service_account_kubeconfig(stack, RELEASE_NAMESPACE, RELEASE, workdir / f"{name}.kubeconfig")
    return OperatorProcess(name, kubeconfig, config, workdir / f"{name}.log", {"ROTOR_METRICS_PORT": "0", **env})


def audit_events(stack: Stack, username: str | None = None) -> Iterator[dict[str, Any]]:
    """The API server's audit log, one event per request, optionally for one user.

    ResponseComplete for ordinary requests; watches are long-running and complete only when they end,
    so theirs is the ResponseStarted event.
    """
    with open(stack.info.kube_audit_log) as log:
        for line in log:
            event = json.loads(line)
            stage = "ResponseStarted" if event.get("verb") == "watch" else "ResponseComplete"
            if event.get("stage") != stage:
                continue
            if username is None or event.get("user", {}).get("username") == username:
                yield event


def sa_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"
