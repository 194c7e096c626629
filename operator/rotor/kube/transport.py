"""One request to the API server, off the event loop: the client, its thread pool, plain-JSON calls."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from rotor.kube.errors import KubeError, kube_error
from rotor.observability.metrics import KUBE_REQUESTS

T = TypeVar("T")


def load_config(kubeconfig: str | None = None) -> kubernetes.client.Configuration:
    """In-cluster config when running in a pod, else the kubeconfig ($KUBECONFIG or ~/.kube/config)."""
    config = kubernetes.client.Configuration()
    # The client reads $KUBECONFIG once, at import; read it now so a later change is honoured.
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=config)
    else:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=config)
    return config


def api_path(group: str, version: str, plural: str, namespace: str | None) -> str:
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


class Transport:
    """The client is synchronous; calls run in a dedicated thread pool so the operator's event loop
    never blocks. Every call is counted (rotor_kube_requests_total) and fails as a KubeError."""

    def __init__(self, config: kubernetes.client.Configuration | None = None, *, threads: int = 16) -> None:
        config = config or load_config()
        config.connection_pool_maxsize = threads
        self.api = kubernetes.client.ApiClient(config)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.apps = kubernetes.client.AppsV1Api(self.api)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rotor-kube")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    async def _call(self, verb: str, resource: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._call_in(self._pool, verb, resource, lambda: fn(*args, **kwargs))

    async def _call_in(self, pool: ThreadPoolExecutor, verb: str, resource: str, fn: Callable[[], T]) -> T:
        """FN in a thread of POOL, counted, its failures as KubeError."""
        KUBE_REQUESTS.labels(verb, resource).inc()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, fn)
        except ApiException as exc:
            raise kube_error(exc) from None
        except urllib3.exceptions.HTTPError as exc:
            # The API server unreachable (restarting, network): a failure callers retry like a 503, not a crash.
            raise KubeError(503, "ServiceUnavailable", f"the API server could not be reached ({type(exc).__name__})") \
                from None

    async def _json(self, verb: str, resource: str, method: str, path: str, body: Any = None, *,
                    query: list[tuple[str, str]] | None = None, accept: str = "application/json",
                    content_type: str = "application/json", parse: bool = True) -> dict[str, Any]:
        """One request with plain JSON in and out. The hot path avoids the client's model classes:
        building and parsing them costs more CPU than the request itself (each one copies the
        client Configuration), and plain JSON is all Rotor keeps anyway. PARSE False: the answer is
        read and dropped ({}), for writes whose result nobody reads (the whole object, managedFields
        and all: parsing it was a tenth of a first sync's CPU)."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        response = await self._call(verb, resource, self.api.call_api, path, method, query_params=query or [],
                                    header_params=headers, body=body, auth_settings=["BearerToken"],
                                    _preload_content=False, _return_http_data_only=True)
        data = response.data  # read whole either way: the connection goes back to the pool
        result: dict[str, Any] = json.loads(data) if data and parse else {}
        return result

    async def _pages(self, resource: str, path: str, page: int, *, accept: str = "application/json",
                     query: list[tuple[str, str]] | None = None) -> AsyncIterator[dict[str, Any]]:
        token = ""
        while True:
            params = [*(query or ()), ("limit", str(page))] + ([("continue", token)] if token else [])
            body = await self._json("list", resource, "GET", path, query=params, accept=accept)
            yield body
            token = (body.get("metadata") or {}).get("continue") or ""
            if not token:
                return
