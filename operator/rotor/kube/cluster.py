"""The cluster around Rotor's objects: namespaces, ServiceAccount tokens, workloads."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from rotor.kube.errors import KubeError
from rotor.kube.transport import Transport, api_path
from rotor.planning.podspec import BY_KIND, ROLLED_OUT

# What kubectl sends for a dict patch of a built-in kind: lists of containers merge by name.
_STRATEGIC = "application/strategic-merge-patch+json"


class ClusterApi(Transport):
    async def ensure_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        try:
            await self._json("create", "namespaces", "POST", "/api/v1/namespaces", body, parse=False)
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
        """The namespace kubectl would use: the kubeconfig context's; in a pod its own; else default."""
        return self.config.namespace

    async def request_token(self, namespace: str, service_account: str, audience: str,
                            seconds: int = 600) -> tuple[str, datetime.datetime]:
        """A short-lived token for the ServiceAccount (TokenRequest), and when it expires."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience], "expirationSeconds": seconds}}
        result = await self._json("create", "serviceaccounts/token", "POST",
                                  f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token", body)
        status = result.get("status") or {}
        expires = datetime.datetime.fromisoformat(str(status["expirationTimestamp"]).replace("Z", "+00:00"))
        return str(status["token"]), expires

    async def list_workloads(self, namespace: str) -> list[tuple[str, dict[str, Any]]]:
        """(kind, object as a plain dict) for every Deployment, StatefulSet and DaemonSet of a namespace."""
        out: list[tuple[str, dict[str, Any]]] = []
        for kind in ROLLED_OUT:
            workload = BY_KIND[kind]
            async for page in self._pages(workload.plural, api_path(workload.group, workload.version,
                                                                    workload.plural, namespace), 500):
                out.extend((kind, item) for item in page.get("items") or ())
        return out

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Patch a Deployment, StatefulSet, DaemonSet or CronJob (a resourceVersion in it guards it)."""
        workload = BY_KIND[kind]
        path = api_path(workload.group, workload.version, workload.plural, namespace)
        await self._json("patch", workload.plural, "PATCH", f"{path}/{name}", dict(patch),
                         content_type=_STRATEGIC, parse=False)
