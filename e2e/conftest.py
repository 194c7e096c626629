"""Where the e2e scenarios run. They are what a user checks after installing Rotor, so they talk to a
cluster only through a kubeconfig and to Vault/OpenBao only through its HTTP API.

1. E2E_KUBECONFIG set: that cluster, where Rotor is already installed (chart or process), with
   E2E_VAULT_ADDR and E2E_VAULT_TOKEN (a token that may write policies, roles and KV data; the Vault
   Kubernetes auth method must be configured against that cluster). Optional: E2E_VAULT_CONNECTION
   (Rotor's connection name, default "default"), E2E_VAULT_AUTH_MOUNT ("kubernetes"),
   E2E_VAULT_KV_MOUNT ("secret", KV v2), E2E_APP_IMAGE (an image with python3 for the workload).
   CI does this against the local control plane: tests/integration/packaging/test_e2e_local.py.
2. Docker and kind available (`make e2e`): pytest-kind creates a cluster, the image is built and
   loaded, OpenBao and the chart are installed (e2e/kind_install.py), then the same scenarios run.
3. Neither: every scenario is skipped with a reason saying how to run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

HOW_TO_RUN = ("e2e needs a cluster: set E2E_KUBECONFIG (plus E2E_VAULT_ADDR and E2E_VAULT_TOKEN) for a cluster "
              "where Rotor is installed, or install Docker and run `make e2e` (pytest-kind creates a kind "
              "cluster, installs OpenBao and the chart); CI runs these scenarios against the local control "
              "plane through tests/integration/packaging/test_e2e_local.py")


@dataclass(frozen=True)
class Target:
    kubeconfig: str
    vault_addr: str
    vault_token: str
    connection: str = "default"
    auth_mount: str = "kubernetes"
    kv_mount: str = "secret"
    app_image: str | None = None


def docker_usable() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def mode() -> str | None:
    if os.environ.get("E2E_KUBECONFIG"):
        return "kubeconfig"
    if docker_usable():
        return "kind"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if mode() is None:
        skip = pytest.mark.skip(reason=HOW_TO_RUN)
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if mode() == "kubeconfig":
        missing = [v for v in ("E2E_VAULT_ADDR", "E2E_VAULT_TOKEN") if not os.environ.get(v)]
        if missing:
            pytest.fail(f"E2E_KUBECONFIG is set but {', '.join(missing)} is not: {HOW_TO_RUN}")
        yield Target(
            kubeconfig=os.environ["E2E_KUBECONFIG"], vault_addr=os.environ["E2E_VAULT_ADDR"],
            vault_token=os.environ["E2E_VAULT_TOKEN"],
            connection=os.environ.get("E2E_VAULT_CONNECTION", "default"),
            auth_mount=os.environ.get("E2E_VAULT_AUTH_MOUNT", "kubernetes"),
            kv_mount=os.environ.get("E2E_VAULT_KV_MOUNT", "secret"),
            app_image=os.environ.get("E2E_APP_IMAGE"))
        return
    from .kind_install import installed_in_kind

    cluster = request.getfixturevalue("kind_cluster")
    with installed_in_kind(cluster) as kind_target:
        yield kind_target
