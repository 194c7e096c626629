"""The Kubernetes I/O layer: the only package that imports the kubernetes client.

Kube is one object with the API Rotor uses, in parts by what they touch: Secrets (secrets.py),
Rotor's own objects and their Events (objects.py), namespaces, tokens and workloads (cluster.py),
metadata-only lists and watches (watch.py), over one transport (transport.py). Bodies are planned in
rotor.planning.kube_bodies. Errors are KubeError with the API's Status message only (errors.py).
"""

from __future__ import annotations

from rotor.kube.cluster import ClusterApi
from rotor.kube.errors import KubeError
from rotor.kube.objects import ObjectsApi
from rotor.kube.secrets import SecretsApi
from rotor.kube.transport import load_config
from rotor.kube.watch import WatchApi


class Kube(SecretsApi, ObjectsApi, ClusterApi, WatchApi):
    """Rotor's Kubernetes API (tests/fakes/kube.py is its in-memory stand-in)."""


__all__ = ["Kube", "KubeError", "load_config"]
