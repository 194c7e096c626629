"""What every bench script does first on the local control plane: a client and Rotor's CRDs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import kubernetes
import yaml

REPO = Path(__file__).resolve().parents[1]


def client_with_crds(kubeconfig: str) -> kubernetes.client.ApiClient:
    """An API client (32 pooled connections, for the scripts' parallel set-up) once Rotor's CRDs from
    crds/ are installed and, after a short wait, served."""
    api = kubernetes.config.new_client_from_config(config_file=kubeconfig)
    api.configuration.connection_pool_maxsize = 32
    ext = kubernetes.client.ApiextensionsV1Api(api)
    for path in sorted((REPO / "crds").glob("*.yaml")):
        ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
    time.sleep(2)
    return api


def raise_etcd_quota(gib: int) -> None:
    """Give the bench stack's etcd a GIB backend quota (its default, 2 GiB, is below what the memory bench
    stores: about 1.4 GiB of Secrets plus history). etcd reads every flag from ETCD_<FLAG> too, and the
    stack starts it with this process's environment; call before Stack.start()."""
    os.environ["ETCD_QUOTA_BACKEND_BYTES"] = str(gib << 30)
