"""What the scenarios share: a fresh tenant namespace with a workload identity Vault trusts."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import hvac
import kubernetes

from .conftest import Target


@dataclass
class Tenant:
    """A namespace with ServiceAccount `app` and a Vault role that reads secret/<namespace>/*."""

    target: Target
    namespace: str
    role: str
    core: kubernetes.client.CoreV1Api
    apps: kubernetes.client.AppsV1Api
    custom: kubernetes.client.CustomObjectsApi
    vault: hvac.Client

    def write(self, path: str, data: dict[str, str]) -> None:
        self.vault.secrets.kv.v2.create_or_update_secret(f"{self.namespace}/{path}", data,
                                                        mount_point=self.target.kv_mount)

    def secret_source(self, name: str, path: str, **spec: Any) -> None:
        body = {"apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource", "metadata": {"name": name},
                "spec": {"provider": "vault", "serviceAccountName": "app",
                         "vault": {"connection": self.target.connection, "mount": self.target.kv_mount,
                                   "path": f"{self.namespace}/{path}", "role": self.role}, **spec}}
        self.custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", self.namespace, "secretsources", body)

    def ready(self, name: str) -> dict[str, Any] | None:
        source = self.custom.get_namespaced_custom_object("rotor.dev", "v1alpha1", self.namespace,
                                                          "secretsources", name)
        conditions = (source.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready" and c["status"] == "True"), None)

    def secret(self, name: str) -> dict[str, bytes] | None:
        try:
            secret = self.core.read_namespaced_secret(name, self.namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@contextmanager
def tenant(target: Target) -> Iterator[Tenant]:
    api = kubernetes.config.new_client_from_config(config_file=target.kubeconfig)
    core = kubernetes.client.CoreV1Api(api)
    vault = hvac.Client(url=target.vault_addr, token=target.vault_token)
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    role = f"{namespace}-app"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"rotor.dev/e2e": "true"}}})
    try:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
        vault.sys.create_or_update_policy(
            name=role, policy=f'path "{target.kv_mount}/data/{namespace}/*" {{ capabilities = ["read"] }}')
        vault.write(f"auth/{target.auth_mount}/role/{role}", bound_service_account_names=["app"],
                    bound_service_account_namespaces=[namespace], policies=[role], audience="vault", ttl="1h")
        yield Tenant(target, namespace, role, core, kubernetes.client.AppsV1Api(api),
                     kubernetes.client.CustomObjectsApi(api), vault)
    finally:
        core.delete_namespace(namespace)
        vault.delete(f"auth/{target.auth_mount}/role/{role}")
        vault.sys.delete_policy(role)
        api.close()


def rotator(t: Tenant) -> str:
    """ServiceAccount `rotator` and a Vault role that may write the tenant's KV paths (rotation needs it;
    the readers' role stays read-only)."""
    role = f"{t.namespace}-rotator"
    mount = t.target.kv_mount
    t.core.create_namespaced_service_account(t.namespace, {"metadata": {"name": "rotator"}})
    t.vault.sys.create_or_update_policy(name=role, policy="\n".join([
        f'path "{mount}/data/{t.namespace}/*" {{ capabilities = ["create", "update", "read"] }}',
        f'path "{mount}/metadata/{t.namespace}/*" {{ capabilities = ["create", "update", "read"] }}',
        f'path "{mount}/destroy/{t.namespace}/*" {{ capabilities = ["update"] }}']))
    t.vault.write(f"auth/{t.target.auth_mount}/role/{role}", bound_service_account_names=["rotator"],
                  bound_service_account_namespaces=[t.namespace], policies=[role], audience="vault", ttl="1h")
    return role


def has_nodes(target: Target) -> bool:
    """Whether pods can run at all (the local control plane has no kubelet)."""
    api = kubernetes.config.new_client_from_config(config_file=target.kubeconfig)
    try:
        nodes = kubernetes.client.CoreV1Api(api).list_node().items
    finally:
        api.close()
    return any(c.type == "Ready" and c.status == "True" for n in nodes for c in n.status.conditions or [])
