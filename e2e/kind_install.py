"""`make e2e` with Docker and kind: build and load the image, install OpenBao and the chart.

Not exercised in this repository's CI (there is no container engine there); CI runs the same
scenarios against the local control plane instead (tests/integration/packaging/test_e2e_local.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hvac
import yaml
from tests.devenv import binaries

from .conftest import Target

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("E2E_IMAGE", "rotor:e2e")
OPENBAO_IMAGE = os.environ.get("E2E_OPENBAO_IMAGE", "quay.io/openbao/openbao:2.4.3")
ROOT_TOKEN = "e2e-root"  # the throwaway dev-mode server's root token, inside a throwaway cluster

OPENBAO = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "openbao"}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "openbao", "namespace": "openbao"}},
    # OpenBao reviews workload tokens with its own ServiceAccount (TokenReview), as in production.
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "openbao-token-reviewer"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
     "subjects": [{"kind": "ServiceAccount", "name": "openbao", "namespace": "openbao"}]},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "openbao", "namespace": "openbao"},
     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "openbao"}}, "template": {
         "metadata": {"labels": {"app": "openbao"}},
         "spec": {"serviceAccountName": "openbao", "containers": [{
             "name": "openbao", "image": OPENBAO_IMAGE,
             "args": ["server", "-dev", f"-dev-root-token-id={ROOT_TOKEN}", "-dev-listen-address=0.0.0.0:8200"],
             "ports": [{"containerPort": 8200}],
             "readinessProbe": {"httpGet": {"path": "/v1/sys/health", "port": 8200}}}]}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "openbao", "namespace": "openbao"},
     "spec": {"selector": {"app": "openbao"}, "ports": [{"port": 8200, "targetPort": 8200}]}},
]


def run(*argv: str, **kwargs: Any) -> None:
    subprocess.run(argv, check=True, **kwargs)


@contextmanager
def installed_in_kind(cluster: Any) -> Iterator[Target]:
    kubeconfig = str(cluster.kubeconfig_path)
    run("docker", "build", "-t", IMAGE, str(REPO))
    cluster.load_docker_image(IMAGE)
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in OPENBAO))
    cluster.kubectl("-n", "openbao", "rollout", "status", "deployment/openbao", "--timeout=180s")
    repository, tag = IMAGE.rsplit(":", 1)
    run(str(binaries.find("helm")), "install", "rotor", str(REPO / "charts" / "rotor"), "--namespace",
        "rotor-system", "--create-namespace", "--wait", "--timeout", "5m",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
        "--set", "vaultConnections.default.address=http://openbao.openbao.svc:8200",
        env={**os.environ, "KUBECONFIG": kubeconfig})
    with cluster.port_forward("service/openbao", 8200, "-n", "openbao") as port:
        addr = f"http://127.0.0.1:{port}"
        vault = hvac.Client(url=addr, token=ROOT_TOKEN)
        for _ in range(60):
            if vault.sys.is_initialized():
                break
            time.sleep(1)
        vault.sys.enable_auth_method("kubernetes")
        # In the pod, OpenBao finds the API server, its CA and its own reviewer token by itself.
        vault.write("auth/kubernetes/config", kubernetes_host="https://kubernetes.default.svc")
        yield Target(kubeconfig=kubeconfig, vault_addr=addr, vault_token=ROOT_TOKEN, app_image=IMAGE)
