"""The cluster around Rotor's objects: namespaces, ServiceAccount tokens, workloads."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes

from rotor.kube.errors import KubeError
from rotor.kube.transport import Transport
from rotor.planning.podspec import BY_KIND, ROLLED_OUT


class ClusterApi(Transport):
    async def ensure_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        try:
            await self._call("create", "namespaces", self.core.create_namespace, body)
        except KubeError as err:
            if err.status not in (403, 409):  # exists, or we may not create it (then it must exist)
                raise

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._json("get", "namespaces", "GET", f"/api/v1/namespaces/{name}")
        except KubeError as err:
            if err.not_found:
                return None
            raise

    def context_namespace(self) -> str:
        """The namespace kubectl would use: the kubeconfig context's, in a pod its own, else default."""
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            try:
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                    return f.read().strip() or "default"
            except OSError:
                return "default"
        try:
            _, active = kubernetes.config.list_kube_config_contexts()
        except (kubernetes.config.ConfigException, OSError):
            return "default"
        return str(((active or {}).get("context") or {}).get("namespace") or "default")

    async def request_token(self, namespace: str, service_account: str, audience: str,
                            seconds: int = 600) -> tuple[str, datetime.datetime]:
        """A short-lived token for the ServiceAccount (TokenRequest), and when it expires."""
        body = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=[audience], expiration_seconds=seconds))
        result = await self._call("create", "serviceaccounts/token",
                                  self.core.create_namespaced_service_account_token,
                                  service_account, namespace, body)
        return result.status.token, result.status.expiration_timestamp

    async def list_workloads(self, namespace: str) -> list[tuple[str, dict[str, Any]]]:
        """(kind, object as a plain dict) for every Deployment, StatefulSet and DaemonSet of a namespace."""
        out: list[tuple[str, dict[str, Any]]] = []
        for kind in ROLLED_OUT:
            fn, resource = self._workload_api(kind, "list")
            result = await self._call("list", resource, fn, namespace)
            out.extend((kind, self.api.sanitize_for_serialization(item)) for item in result.items)
        return out

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch a Deployment, StatefulSet, DaemonSet or CronJob (a resourceVersion in it guards it)."""
        fn, resource = self._workload_api(kind, "patch")
        await self._call("patch", resource, fn, name, namespace, dict(patch))

    def _workload_api(self, kind: str, verb: str) -> tuple[Callable[..., Any], str]:
        """The client's list_/patch_namespaced_<kind> (e.g. AppsV1Api.patch_namespaced_stateful_set)."""
        workload = BY_KIND[kind]
        api = self.apps if workload.group == "apps" else kubernetes.client.BatchV1Api(self.api)
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in kind).lstrip("_")
        return getattr(api, f"{verb}_namespaced_{snake}"), workload.plural
