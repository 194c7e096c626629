"""The Kubernetes I/O layer: the only package that talks to the API server (aiohttp, plain JSON).

Kube is one object with the API Rotor uses, in parts by what they touch: Secrets (secrets.py),
Rotor's own objects and their Events (objects.py), namespaces, tokens and workloads (cluster.py),
lists and watches (watch.py), over one transport (transport.py) and the connection it is configured
with (config.py: in a pod its ServiceAccount, elsewhere a kubeconfig). Bodies are planned in
rotor.planning.kube_bodies. Errors are KubeError with the API's Status message only (errors.py).
"""

from __future__ import annotations

from rotor.kube.cluster import ClusterApi
from rotor.kube.config import KubeConfig, KubeConfigError, load_config
from rotor.kube.errors import KubeError
from rotor.kube.objects import ObjectsApi
from rotor.kube.secrets import SecretsApi
from rotor.kube.watch import WatchApi


class Kube(SecretsApi, ObjectsApi, ClusterApi, WatchApi):
    """Rotor's Kubernetes API (tests/fakes/kube.py is its in-memory stand-in)."""


__all__ = ["Kube", "KubeConfig", "KubeConfigError", "KubeError", "load_config"]
