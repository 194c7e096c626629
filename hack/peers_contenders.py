"""The operators hack/bench_peers.py runs, each as a local process with the stack's kubeconfig: what CRDs
it needs, what objects ask it for the bench's secrets, and its command line.

Every contender delivers the same thing: in namespace bench-NNN, Secret s<i> with key `value` holding
the KV v2 secret secret/bench/<namespace>/s<i>, read with the namespace's own Kubernetes-auth role
(ServiceAccount `app`, audience `vault`), refreshed every INTERVAL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ESO_VERSION = os.environ.get("ESO_VERSION", "v0.16.2")
VSO_VERSION = os.environ.get("VSO_VERSION", "v1.4.1")
# Flags that make each peer fair at scale (client QPS/burst, concurrency); "defaults" runs without them.
ESO_TUNED = ["--concurrent=32", "--client-qps=500", "--client-burst=1000"]
VSO_TUNED = ["--kube-client-qps=500", "--kube-client-burst=1000"]
VSO_NAMESPACE = "vso-system"  # where VSO keeps its own objects (HMAC key); OPERATOR_NAMESPACE


@dataclass
class Contender:
    key: str  # results key: rotor, rotor-feed, eso, eso-tuned, vso, vso-tuned
    label: str  # table column
    kind: str  # rotor | eso | vso
    home: Path | None  # the peer's cache dir (binary + crds/), None for Rotor
    flags: list[str] = field(default_factory=list)
    feed: bool = False  # Rotor as the sink of Vault's socket audit device (the opt-in change feed)

    @property
    def crds(self) -> list[Path]:
        return sorted(((REPO / "crds") if self.home is None else (self.home / "crds")).glob("*.yaml"))

    def namespace_objects(self, ns: str, vault_addr: str) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(group, version, plural, body) created once per namespace, before the per-secret ones."""
        auth = {"role": ns, "mount": "kubernetes"}
        if self.kind == "eso":
            return [("external-secrets.io", "v1", "secretstores", {
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": "vault"},
                "spec": {"provider": {"vault": {"server": vault_addr, "path": "secret", "version": "v2", "auth": {
                    "kubernetes": {"mountPath": auth["mount"], "role": ns,
                                   "serviceAccountRef": {"name": "app", "audiences": ["vault"]}}}}}}})]
        if self.kind == "vso":
            return [
                ("secrets.hashicorp.com", "v1beta1", "vaultconnections", {
                    "apiVersion": "secrets.hashicorp.com/v1beta1", "kind": "VaultConnection",
                    "metadata": {"name": "vault"}, "spec": {"address": vault_addr}}),
                ("secrets.hashicorp.com", "v1beta1", "vaultauths", {
                    "apiVersion": "secrets.hashicorp.com/v1beta1", "kind": "VaultAuth", "metadata": {"name": "vault"},
                    "spec": {"vaultConnectionRef": "vault", "method": "kubernetes", "mount": auth["mount"],
                             "kubernetes": {"role": ns, "serviceAccount": "app", "audiences": ["vault"]}}}),
            ]
        return []

    def secret_object(self, ns: str, i: int, interval: str) -> tuple[str, str, str, dict[str, Any]]:
        """The object asking for Secret s<i> in NS."""
        path, name = f"bench/{ns}/s{i}", f"s{i}"
        if self.kind == "eso":
            return ("external-secrets.io", "v1", "externalsecrets", {
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": name},
                "spec": {"refreshInterval": interval, "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
                         "target": {"name": name, "creationPolicy": "Owner"},
                         "data": [{"secretKey": "value", "remoteRef": {"key": path, "property": "value"}}]}})
        if self.kind == "vso":
            return ("secrets.hashicorp.com", "v1beta1", "vaultstaticsecrets", {
                "apiVersion": "secrets.hashicorp.com/v1beta1", "kind": "VaultStaticSecret", "metadata": {"name": name},
                "spec": {"vaultAuthRef": "vault", "mount": "secret", "type": "kv-v2", "path": path,
                         "refreshAfter": interval, "destination": {"name": name, "create": True}}})
        return ("rotor.dev", "v1alpha1", "secretsources", {
            "apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource", "metadata": {"name": name},
            "spec": {"provider": "vault", "vault": {"path": path, "role": ns}, "serviceAccountName": "app",
                     "refresh": {"interval": interval, "jitter": 0.1}}})

    def command(self, vault_env: dict[str, str], ports: tuple[int, int]) -> tuple[list[str], dict[str, str]]:
        """argv and extra environment. Only what running outside a cluster needs differs from the
        defaults: free metrics/probe ports, no leader election (no lease namespace), no webhook."""
        metrics, probe = ports
        if self.kind == "eso":
            assert self.home is not None
            return [str(self.home / "eso"), f"--metrics-addr=127.0.0.1:{metrics}", "--loglevel=error",
                    *self.flags], {}
        if self.kind == "vso":
            assert self.home is not None
            return [str(self.home / "vso"), f"--metrics-bind-address=127.0.0.1:{metrics}",
                    f"--health-probe-bind-address=127.0.0.1:{probe}", "--leader-elect=false", "--zap-log-level=error",
                    *self.flags], {"OPERATOR_NAMESPACE": VSO_NAMESPACE}
        # Rotor as `make bench` runs it (hack/bench.py).
        return [sys.executable, "-m", "rotor", "run"], {
            **vault_env, "ROTOR_METRICS_PORT": str(metrics), "ROTOR_SYNC_WORKERS": "32",
            "ROTOR_LOG_LEVEL": "warning"}


def peers_cache() -> Path:
    out = subprocess.run(["bash", str(REPO / "hack" / "peers.sh"), "--print"], capture_output=True, text=True,
                         check=True)
    return Path(out.stdout.strip())


def built(name: str, version: str) -> Path | None:
    home = peers_cache() / f"{name}-{version}"
    return home if (home / name).is_file() and any((home / "crds").glob("*.yaml")) else None


def contenders(only: list[str] | None = None) -> tuple[list[Contender], list[str]]:
    """Rotor always (polling, and with the change feed, which neither peer has on Vault Community Edition),
    then each peer that is built at defaults and tuned; and why any peer is missing."""
    found = [Contender("rotor", "Rotor", "rotor", None), Contender("rotor-feed", "Rotor, change feed", "rotor", None,
                                                                   feed=True)]
    missing: list[str] = []
    eso, vso = built("eso", ESO_VERSION), built("vso", VSO_VERSION)
    if eso:
        found += [Contender("eso", "ESO defaults", "eso", eso),
                  Contender("eso-tuned", "ESO tuned", "eso", eso, ESO_TUNED)]
    else:
        missing.append(f"External Secrets Operator {ESO_VERSION} is not built "
                       f"({peers_cache()}/eso-{ESO_VERSION}/eso): run `make peers` (hack/peers.sh)")
    if vso:
        found += [Contender("vso", "VSO defaults", "vso", vso),
                  Contender("vso-tuned", "VSO tuned", "vso", vso, VSO_TUNED)]
    else:
        missing.append(f"Vault Secrets Operator {VSO_VERSION} is not built ({peers_cache()}/vso-{VSO_VERSION}/vso): "
                       "run `make peers VSO_SOURCE=<checkout or bare git dir of hashicorp/vault-secrets-operator>`")
    if only:
        found = [c for c in found if c.key in only]
    return found, missing
