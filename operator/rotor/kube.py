"""The Kubernetes I/O layer: the only module that imports the kubernetes client.

The client is synchronous; calls run in a dedicated thread pool so the operator's event loop never
blocks. Errors become KubeError with the API's Status message only: an ApiException's text holds the
response body, which for a Secret could hold data.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import secrets as _random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from rotor import GROUP, VERSION
from rotor.api.keys import MANAGED_BY, MANAGED_KEYS, SOURCE_LABEL
from rotor.observability.metrics import KUBE_REQUESTS
from rotor.planning.sync import DesiredSecret, ObservedSecret, Owner

T = TypeVar("T")


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def _kube_error(exc: ApiException) -> KubeError:
    reason, message = str(exc.reason or ""), ""
    try:
        status = json.loads(exc.body or "{}")
        reason = status.get("reason", reason)
        message = status.get("message", "")
    except ValueError:
        pass
    return KubeError(int(exc.status or 0), reason, message)


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


class Kube:
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
        KUBE_REQUESTS.labels(verb, resource).inc()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
        except ApiException as exc:
            raise _kube_error(exc) from None

    async def ensure_namespace(self, name: str) -> None:
        body = kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name))
        try:
            await self._call("create", "namespaces", self.core.create_namespace, body)
        except KubeError as err:
            if err.status not in (403, 409):  # exists, or we may not create it (then it must exist)
                raise

    # -- identity -------------------------------------------------------------------------------

    async def request_token(self, namespace: str, service_account: str, audience: str,
                            seconds: int = 600) -> tuple[str, datetime.datetime]:
        """A short-lived token for the ServiceAccount (TokenRequest), and when it expires."""
        body = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=[audience], expiration_seconds=seconds))
        result = await self._call("create", "serviceaccounts/token",
                                  self.core.create_namespaced_service_account_token,
                                  service_account, namespace, body)
        return result.status.token, result.status.expiration_timestamp

    # -- Secrets --------------------------------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> ObservedSecret | None:
        try:
            body = await self._json("get", "secrets", "GET", _secret_path(namespace, name))
        except KubeError as err:
            if err.not_found:
                return None
            raise
        return ObservedSecret.from_json(body)

    async def write_secret(self, namespace: str, action: str, desired: DesiredSecret, owner: Owner,
                           existing: ObservedSecret | None) -> ObservedSecret:
        """Create, replace (optimistically, on the observed resourceVersion) or recreate the Secret."""
        metadata: dict[str, Any] = {"name": desired.name, "namespace": namespace, "labels": dict(desired.labels),
                                    "annotations": dict(desired.annotations)}
        if desired.owned:
            metadata["ownerReferences"] = [_owner_ref(owner)]
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": desired.type,
                "data": {k: base64.b64encode(v).decode() for k, v in desired.data.items()}}
        if action in ("create", "recreate"):
            if action == "recreate":
                await self.delete_secret(namespace, desired.name)
            created = await self._json("create", "secrets", "POST", _secret_path(namespace), body)
            return ObservedSecret.from_json(created)
        assert existing is not None
        # Keep labels, annotations and owners others put there; replace only what Rotor manages.
        metadata["labels"] = {**existing.labels, **desired.labels}
        metadata["annotations"] = {**existing.annotations, **desired.annotations}
        metadata["resourceVersion"] = existing.resource_version
        refs = [dict(r) for r in existing.owner_refs]
        if desired.owned and owner.uid not in existing.owner_uids:
            refs.append(_owner_ref(owner))
        metadata.pop("ownerReferences", None)
        if refs:
            metadata["ownerReferences"] = refs
        replaced = await self._json("replace", "secrets", "PUT", _secret_path(namespace, desired.name), body)
        return ObservedSecret.from_json(replaced)

    async def release_secret(self, namespace: str, secret: ObservedSecret, owner_uid: str, *, delete: bool,
                             merge: bool) -> None:
        """Undo Rotor's hold on a Secret when its SecretSource goes (deletionPolicy)."""
        if delete and not merge:
            await self.delete_secret(namespace, secret.name)
            return
        managed = set(filter(None, secret.annotations.get(MANAGED_KEYS, "").split(",")))
        data = {k: v for k, v in secret.data.items() if not (delete and k in managed)}
        body = kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(
                name=secret.name, namespace=namespace, resource_version=secret.resource_version,
                labels={k: v for k, v in secret.labels.items() if k not in (SOURCE_LABEL, MANAGED_BY)} or None,
                annotations={k: v for k, v in secret.annotations.items() if not k.startswith("rotor.dev/")} or None,
                owner_references=[kubernetes.client.V1OwnerReference(
                    api_version=r["apiVersion"], kind=r["kind"], name=r["name"], uid=r["uid"],
                    controller=r.get("controller"), block_owner_deletion=r.get("blockOwnerDeletion"))
                    for r in secret.owner_refs if r.get("uid") != owner_uid] or None,
            ),
            type=secret.type, data={k: base64.b64encode(v).decode() for k, v in data.items()},
        )
        await self._call("replace", "secrets", self.core.replace_namespaced_secret, secret.name, namespace, body)

    async def delete_secret(self, namespace: str, name: str) -> bool:
        try:
            await self._call("delete", "secrets", self.core.delete_namespaced_secret, name, namespace)
        except KubeError as err:
            if err.not_found:
                return False
            raise
        return True

    async def get_or_create_key(self, namespace: str, name: str, key: str = "hmac-key") -> bytes:
        """The operator's HMAC key, kept in a Secret so every replica and restart agrees on digests."""
        existing = await self.read_secret(namespace, name)
        if existing is not None and key in existing.data:
            return bytes(existing.data[key])
        body = kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name=name, namespace=namespace,
                                                    labels={"app.kubernetes.io/part-of": "rotor"}),
            data={key: base64.b64encode(_random.token_bytes(32)).decode()})
        try:
            await self._call("create", "secrets", self.core.create_namespaced_secret, namespace, body)
        except KubeError as err:
            if not err.conflict:
                raise
        again = await self.read_secret(namespace, name)
        assert again is not None
        return bytes(again.data[key])

    # -- Rotor objects --------------------------------------------------------------------------

    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any], *,
                           missing_ok: bool = False) -> bool:
        """Merge-patch a Rotor object's status; with missing_ok, False if the object is gone."""
        try:
            await self._json("patch", f"{plural}/status", "PATCH",
                             f"{self._path(GROUP, VERSION, plural, namespace)}/{name}/status",
                             {"status": dict(status)}, content_type="application/merge-patch+json")
        except KubeError as err:
            if missing_ok and err.not_found:
                return False
            raise
        return True

    async def set_finalizers(self, plural: str, namespace: str, name: str, finalizers: Sequence[str],
                             resource_version: str | None) -> None:
        """Replace a Rotor object's finalizers, only if it is still at RESOURCE_VERSION (a 409 otherwise):
        the list is written whole, so a finalizer someone added meanwhile must not be dropped."""
        await self._json("patch", plural, "PATCH", f"{self._path(GROUP, VERSION, plural, namespace)}/{name}",
                         {"metadata": {"finalizers": list(finalizers) or None, "resourceVersion": resource_version}},
                         content_type="application/merge-patch+json")

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await self._call("get", plural, self.custom.get_namespaced_custom_object,
                                   GROUP, VERSION, namespace, plural, name)
        except KubeError as err:
            if err.not_found:
                return None
            raise
        return dict(obj)

    async def post_event(self, *, kind: str, namespace: str, name: str, uid: str, type: str, reason: str,
                         message: str) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "name": name,
                               "namespace": namespace, "uid": uid},
            "type": type, "reason": reason, "message": message[:1024], "firstTimestamp": now,
            "lastTimestamp": now, "count": 1, "source": {"component": "rotor"},
            "reportingComponent": "rotor.dev/operator", "reportingInstance": os.environ.get("HOSTNAME", "rotor"),
        }
        try:
            await self._json("create", "events", "POST", f"/api/v1/namespaces/{namespace}/events", body)
        except KubeError:
            pass  # events are best effort; the status already says the same

    async def annotate(self, plural: str, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        """Merge annotations into a Rotor object (e.g. rotor.dev/rotate-now)."""
        await self._call("patch", plural, self.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace,
                         plural, name, {"metadata": {"annotations": dict(annotations)}})

    # -- rotation (reads)

    async def list_workloads(self, namespace: str) -> list[tuple[str, dict[str, Any]]]:
        """(kind, object as a plain dict) for every Deployment, StatefulSet and DaemonSet of a namespace."""
        out: list[tuple[str, dict[str, Any]]] = []
        for kind, resource, fn in (
            ("Deployment", "deployments", self.apps.list_namespaced_deployment),
            ("StatefulSet", "statefulsets", self.apps.list_namespaced_stateful_set),
            ("DaemonSet", "daemonsets", self.apps.list_namespaced_daemon_set),
        ):
            result = await self._call("list", resource, fn, namespace)
            out.extend((kind, self.api.sanitize_for_serialization(item)) for item in result.items)
        return out

    # -- workloads (delivery)

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch a Deployment, StatefulSet, DaemonSet or CronJob (a resourceVersion in it guards it)."""
        batch = kubernetes.client.BatchV1Api(self.api)
        fn, resource = {
            "Deployment": (self.apps.patch_namespaced_deployment, "deployments"),
            "StatefulSet": (self.apps.patch_namespaced_stateful_set, "statefulsets"),
            "DaemonSet": (self.apps.patch_namespaced_daemon_set, "daemonsets"),
            "CronJob": (batch.patch_namespaced_cron_job, "cronjobs"),
        }[kind]
        await self._call("patch", resource, fn, name, namespace, dict(patch))

    async def list_secrets(self, namespace: str, label_selector: str = "") -> list[ObservedSecret]:
        """The Secrets of a namespace (for digests of Secrets Rotor does not manage; values stay here)."""
        return [secret for _, secret in await self.list_labelled_secrets(label_selector, namespace)]

    async def list_labelled_secrets(self, label_selector: str,
                                    namespace: str | None = None) -> list[tuple[str, ObservedSecret]]:
        """(namespace, Secret) for every Secret the selector matches, in NAMESPACE or cluster-wide."""
        found: list[tuple[str, ObservedSecret]] = []
        async for body in self._pages("secrets", self._path("", "v1", "secrets", namespace), 500,
                                      query=[("labelSelector", label_selector)] if label_selector else None):
            found.extend((item["metadata"]["namespace"], ObservedSecret.from_json(item))
                         for item in body.get("items") or ())
        return found

    # -- inventory (reads) ----------------------------------------------------------------------

    _TABLE = "application/json;as=Table;g=meta.k8s.io;v=v1"

    @staticmethod
    def _path(group: str, version: str, plural: str, namespace: str | None) -> str:
        base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"

    async def list_secret_metadata(self, namespace: str | None = None, *, page: int = 500) -> list[dict[str, Any]]:
        """Every Secret's metadata and type, never its data: the API server answers with a Table of
        PartialObjectMetadata rows (what `kubectl get secrets` shows), so no value leaves it."""
        found: list[dict[str, Any]] = []
        columns: list[str] = []
        async for body in self._pages("secrets", self._path("", "v1", "secrets", namespace), page, accept=self._TABLE,
                                      query=[("includeObject", "Metadata")]):
            columns = [c["name"] for c in body.get("columnDefinitions") or ()] or columns
            at = columns.index("Type") if "Type" in columns else None
            for row in body.get("rows") or ():
                cells = row.get("cells") or ()
                found.append({"metadata": (row.get("object") or {}).get("metadata") or {},
                              "type": cells[at] if at is not None and at < len(cells) else "Opaque"})
        return found

    async def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                           page: int = 500) -> list[dict[str, Any]]:
        """Every object of a kind as plain JSON, one page at a time. Not for Secrets (their data)."""
        assert plural != "secrets", "list Secrets with list_secret_metadata"
        found: list[dict[str, Any]] = []
        async for body in self._pages(plural, self._path(group, version, plural, namespace), page):
            found.extend(body.get("items") or ())
        return found

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

    async def _json(self, verb: str, resource: str, method: str, path: str, body: Any = None, *,
                    query: list[tuple[str, str]] | None = None, accept: str = "application/json",
                    content_type: str = "application/json") -> dict[str, Any]:
        """One request with plain JSON in and out. The hot path avoids the client's model classes:
        building and parsing them costs more CPU than the request itself (each one copies the
        client Configuration), and plain JSON is all Rotor keeps anyway."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        response = await self._call(verb, resource, self.api.call_api, path, method, query_params=query or [],
                                    header_params=headers, body=body, auth_settings=["BearerToken"],
                                    _preload_content=False, _return_http_data_only=True)
        result: dict[str, Any] = json.loads(response.data) if response.data else {}
        return result

    # -- incidents ------------------------------------------------------------------------------

    async def create_object(self, plural: str, namespace: str, body: Mapping[str, Any], *,
                            field_manager: str = "rotor") -> dict[str, Any]:
        """Create a Rotor object (a LeakIncident from `rotor leak report`, an emergency RotationPolicy)."""
        result = await self._call("create", plural, self.custom.create_namespaced_custom_object, GROUP, VERSION,
                                  namespace, plural, dict(body), field_manager=field_manager)
        return dict(result)

    async def patch_object(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch a Rotor object's metadata or spec (rotate-now annotation, tightened schedule)."""
        await self._call("patch", plural, self.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace,
                         plural, name, dict(patch))

    async def delete_object(self, plural: str, namespace: str, name: str) -> bool:
        try:
            await self._call("delete", plural, self.custom.delete_namespaced_custom_object, GROUP, VERSION,
                             namespace, plural, name)
        except KubeError as err:
            if err.not_found:
                return False
            raise
        return True


def _owner_ref(owner: Owner) -> dict[str, Any]:
    return {"apiVersion": owner.api_version, "kind": owner.kind, "name": owner.name, "uid": owner.uid,
            "controller": True, "blockOwnerDeletion": True}


def _secret_path(namespace: str, name: str | None = None) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets" + (f"/{name}" if name else "")
