"""An in-memory Kubernetes layer: rotor.kube.Kube's async API over dicts, for fast engine unit tests.

Objects are plain JSON as the API server sends them (Secret data base64), keyed by (plural, namespace,
name); every write bumps a cluster-wide resourceVersion, and spec changes bump metadata.generation.
Writes that carry a resourceVersion (Secret replaces, finalizers, guarded patches) conflict with a
KubeError(409) when the object moved on, as the API server's optimistic concurrency does. Secret
bodies come from rotor.planning.kube_bodies, the same planning the real layer sends.

Every request is recorded as (verb, resource, name) in `requests` (verbs and resources as the
rotor_kube_requests_total metric counts them), so a test can assert that no write happened.
Faults: `fail(verb, resource, status)` makes the next such request raise KubeError(status) once.
`subscribe(fn)` calls fn(event_type, plural, body) on every change, as a watch would.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from rotor.kube import KubeError
from rotor.planning import times
from rotor.planning.kube_bodies import encode, event_body, released_secret, secret_body
from rotor.planning.podspec import BY_KIND, ROLLED_OUT
from rotor.planning.sync import DesiredSecret, ObservedSecret, Owner

Watcher = Callable[[str, str, dict[str, Any]], None]
_READS = ("get", "list")
_REASONS = {404: "NotFound", 409: "Conflict", 403: "Forbidden", 422: "Invalid", 500: "InternalError"}


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch: nested objects merge, None removes a key."""
    out = copy.deepcopy(dict(target))
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    """A label selector of equality terms: k=v, k==v, k!=v, k, !k (comma-separated: all must hold)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            ok = labels.get(key.strip()) != value.strip()
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            ok = labels.get(key.strip()) == value.strip()
        else:
            ok = (term[1:].strip() not in labels) if term.startswith("!") else term in labels
        if not ok:
            return False
    return True


class FakeKube:
    def __init__(self, *, clock: Callable[[], datetime.datetime] = times.now) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace or "", name)
        self.requests: list[tuple[str, str, str]] = []
        self.events: list[dict[str, Any]] = []  # Event bodies posted
        self.failures: dict[tuple[str, str], list[KubeError]] = {}
        self.watchers: list[Watcher] = []
        self._watch_queues: list[asyncio.Queue[tuple[str, dict[str, Any]] | None]] = []
        self.clock = clock
        self._rv, self._uid = itertools.count(1), itertools.count(1)

    # -- set-up and inspection (not recorded as requests) ----------------------------------------------

    def put(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store BODY as is (an administrator's kubectl apply), with uid, resourceVersion and generation."""
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        key = (plural, meta.get("namespace", ""), meta["name"])
        old = self.objects.get(key)
        meta.setdefault("uid", (old or {}).get("metadata", {}).get("uid") or f"uid-{next(self._uid)}")
        generation = int((old or {}).get("metadata", {}).get("generation") or 0)
        meta["generation"] = generation + 1 if old is None or old.get("spec") != obj.get("spec") else generation
        meta["resourceVersion"] = str(next(self._rv))
        self.objects[key] = obj
        self._notify("ADDED" if old is None else "MODIFIED", plural, obj)
        return copy.deepcopy(obj)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def secret(self, namespace: str, name: str) -> ObservedSecret | None:
        found = self.objects.get(("secrets", namespace, name))
        return ObservedSecret.from_json(found) if found is not None else None

    def writes(self) -> list[tuple[str, str, str]]:
        return [r for r in self.requests if r[0] not in _READS]

    def fail(self, verb: str, resource: str, status: int, message: str = "") -> None:
        """The next VERB of RESOURCE (e.g. "replace", "secrets") raises KubeError(STATUS) instead."""
        self.failures.setdefault((verb, resource), []).append(
            KubeError(status, _REASONS.get(status, "Error"), message or f"fake {verb} {resource} failed"))

    def subscribe(self, watcher: Watcher) -> None:
        self.watchers.append(watcher)

    # -- internals -------------------------------------------------------------------------------------

    def _request(self, verb: str, resource: str, name: str = "") -> None:
        self.requests.append((verb, resource, name))
        queued = self.failures.get((verb, resource))
        if queued:
            raise queued.pop(0)

    def _notify(self, event_type: str, plural: str, body: dict[str, Any]) -> None:
        for watcher in self.watchers:
            watcher(event_type, plural, copy.deepcopy(body))

    def _existing(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        found = self.objects.get((plural, namespace, name))
        if found is None:
            raise KubeError(404, "NotFound", f'{plural} "{name}" not found')
        return found

    def _create(self, plural: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = dict(body.get("metadata") or {})
        if not meta.get("name"):
            meta["name"] = f"{meta.get('generateName', 'obj-')}{next(self._uid):05d}"
        if (plural, namespace, meta["name"]) in self.objects:
            raise KubeError(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists')
        meta.pop("resourceVersion", None)
        meta["namespace"] = namespace
        meta.setdefault("creationTimestamp", times.iso(self.clock()))
        return self.put(plural, {**body, "metadata": meta})

    def _replace(self, plural: str, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        old = self._existing(plural, namespace, name)
        self._check_version(old, (body.get("metadata") or {}).get("resourceVersion"))
        meta = {**old["metadata"], **(body.get("metadata") or {})}
        for dropped in ("labels", "annotations", "ownerReferences", "finalizers"):
            if dropped not in (body.get("metadata") or {}):
                meta.pop(dropped, None)
        return self._after_write(plural, {**body, "metadata": meta})

    def _patch(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        old = self._existing(plural, namespace, name)
        self._check_version(old, (patch.get("metadata") or {}).get("resourceVersion"))
        return self._after_write(plural, merge_patch(old, patch))

    def _after_write(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):  # the last finalizer went
            del self.objects[(plural, meta.get("namespace", ""), meta["name"])]
            self._notify("DELETED", plural, obj)
            return obj
        return self.put(plural, obj)

    def _remove(self, plural: str, namespace: str, name: str) -> bool:
        found = self.objects.get((plural, namespace, name))
        if found is None:
            return False
        if found["metadata"].get("finalizers"):  # deletion waits for them
            if not found["metadata"].get("deletionTimestamp"):
                self.put(plural, merge_patch(found, {"metadata": {"deletionTimestamp": times.iso(self.clock())}}))
            return True
        del self.objects[(plural, namespace, name)]
        self._notify("DELETED", plural, found)
        return True

    @staticmethod
    def _check_version(obj: Mapping[str, Any], wanted: str | None) -> None:
        if wanted is not None and obj["metadata"]["resourceVersion"] != wanted:
            raise KubeError(409, "Conflict", "the object has been modified; please apply your changes to the "
                                             "latest version and try again")

    def _listed(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        return [copy.deepcopy(obj) for (p, ns, _), obj in sorted(self.objects.items())
                if p == plural and (namespace is None or ns == namespace)]

    # -- rotor.kube.Kube --------------------------------------------------------------------------------

    async def close(self) -> None:
        return None

    def context_namespace(self) -> str:
        return "default"

    async def ensure_namespace(self, name: str) -> None:
        self._request("create", "namespaces", name)
        if ("namespaces", "", name) not in self.objects:
            self.put("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        self._request("get", "namespaces", name)
        return self.get("namespaces", "", name)

    async def request_token(self, namespace: str, service_account: str, audience: str,
                            seconds: int = 600) -> tuple[str, datetime.datetime]:
        self._request("create", "serviceaccounts/token", service_account)
        self._existing("serviceaccounts", namespace, service_account)
        return (f"token:{namespace}/{service_account}:{audience}",
                self.clock() + datetime.timedelta(seconds=seconds))

    async def read_secret(self, namespace: str, name: str) -> ObservedSecret | None:
        self._request("get", "secrets", name)
        return self.secret(namespace, name)

    async def write_secret(self, namespace: str, action: str, desired: DesiredSecret, owner: Owner,
                           existing: ObservedSecret | None) -> ObservedSecret:
        if action in ("create", "recreate"):
            if action == "recreate":
                await self.delete_secret(namespace, desired.name)
            self._request("create", "secrets", desired.name)
            created = self._create("secrets", namespace, secret_body(namespace, desired, owner))
            return ObservedSecret.from_json(created)
        assert existing is not None
        self._request("replace", "secrets", desired.name)
        body = secret_body(namespace, desired, owner, existing)
        return ObservedSecret.from_json(self._replace("secrets", namespace, desired.name, body))

    async def release_secret(self, namespace: str, secret: ObservedSecret, owner_uid: str, *, delete: bool,
                             merge: bool) -> None:
        body = released_secret(namespace, secret, owner_uid, delete=delete, merge=merge)
        if body is None:
            await self.delete_secret(namespace, secret.name)
            return
        self._request("replace", "secrets", secret.name)
        self._replace("secrets", namespace, secret.name, body)

    async def delete_secret(self, namespace: str, name: str) -> bool:
        self._request("delete", "secrets", name)
        return self._remove("secrets", namespace, name)

    async def get_or_create_key(self, namespace: str, name: str, key: str = "hmac-key") -> bytes:
        existing = await self.read_secret(namespace, name)
        if existing is not None and key in existing.data:
            return bytes(existing.data[key])
        self._request("create", "secrets", name)
        labels = {"app.kubernetes.io/part-of": "rotor"}
        self._create("secrets", namespace, {"metadata": {"name": name, "labels": labels},
                                            "data": encode({key: secrets.token_bytes(32)})})
        return bytes(ObservedSecret.from_json(self._existing("secrets", namespace, name)).data[key])

    async def list_secrets(self, namespace: str, label_selector: str = "") -> list[ObservedSecret]:
        return [secret for _, secret in await self.list_labelled_secrets(label_selector, namespace)]

    async def list_labelled_secrets(self, label_selector: str,
                                    namespace: str | None = None) -> list[tuple[str, ObservedSecret]]:
        self._request("list", "secrets")
        return [(obj["metadata"]["namespace"], ObservedSecret.from_json(obj))
                for obj in self._listed("secrets", namespace)
                if matches(label_selector, obj["metadata"].get("labels") or {})]

    async def read_secret_body(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._request("get", "secrets", name)
        found = self.objects.get(("secrets", namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list_metadata(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                            label_selector: str = "", page: int = 500) -> tuple[list[dict[str, Any]], str]:
        self._request("list", plural)
        items = [{"metadata": obj["metadata"]} for obj in self._listed(plural, namespace)
                 if matches(label_selector, obj["metadata"].get("labels") or {})]
        return items, str(self.resource_version)

    async def body_pages(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                         label_selector: str = "", page: int = 500) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        assert plural != "secrets", "list Secrets with metadata_pages"
        items = [copy.deepcopy(obj) for obj in self._listed(plural, namespace)
                 if matches(label_selector, obj["metadata"].get("labels") or {})]
        version = str(self.resource_version)
        for at in range(0, max(len(items), 1), page):
            self._request("list", plural)
            yield items[at:at + page], version

    async def metadata_pages(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                             label_selector: str = "", page: int = 500
                             ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        items, listed = await self.list_metadata(group, version, plural, namespace, label_selector=label_selector)
        for at in range(0, max(len(items), 1), page):
            yield items[at:at + page], listed

    def watch_metadata(self, group: str, version: str, plural: str, namespace: str | None,
                       resource_version: str, *, label_selector: str = "",
                       timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Changes from now on (metadata only) until TIMEOUT_SECONDS of quiet; `expire_watches()` ends
        every open watch with 410 Gone, as the API server does when a version is compacted away."""
        return self._watch(False, plural, namespace, label_selector=label_selector, timeout_seconds=timeout_seconds)

    def watch_bodies(self, group: str, version: str, plural: str, namespace: str | None,
                     resource_version: str, *, label_selector: str = "",
                     timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        assert plural != "secrets", "watch Secrets with watch_metadata"
        return self._watch(True, plural, namespace, label_selector=label_selector, timeout_seconds=timeout_seconds)

    async def _watch(self, whole: bool, plural: str, namespace: str | None, *, label_selector: str,
                     timeout_seconds: int) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self._request("watch", plural)
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()

        def watcher(event_type: str, kind: str, body: dict[str, Any]) -> None:
            meta = body["metadata"]
            if kind == plural and (namespace is None or meta.get("namespace") == namespace) and \
                    matches(label_selector, meta.get("labels") or {}):
                queue.put_nowait((event_type, copy.deepcopy(body) if whole else {"metadata": meta}))

        self.watchers.append(watcher)
        self._watch_queues.append(queue)
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout_seconds)
                except TimeoutError:
                    return
                if event is None:
                    raise KubeError(410, "Expired", "too old resource version")
                yield event
        finally:
            self.watchers.remove(watcher)
            self._watch_queues.remove(queue)

    def expire_watches(self) -> None:
        for queue in self._watch_queues:
            queue.put_nowait(None)

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion any object has (a list's version)."""
        return max((int(o["metadata"].get("resourceVersion") or 0) for o in self.objects.values()), default=0)

    async def list_secret_metadata(self, namespace: str | None = None, *, page: int = 500,
                                   label_selector: str = "") -> list[dict[str, Any]]:
        self._request("list", "secrets")
        return [{"metadata": obj["metadata"], "type": obj.get("type") or "Opaque"}
                for obj in self._listed("secrets", namespace)
                if matches(label_selector, obj["metadata"].get("labels") or {})]

    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any], *,
                           missing_ok: bool = False) -> bool:
        self._request("patch", f"{plural}/status", name)
        if (plural, namespace, name) not in self.objects and missing_ok:
            return False
        self._patch(plural, namespace, name, {"status": dict(status)})
        return True

    async def patch_status_guarded(self, plural: str, namespace: str, name: str, status: Mapping[str, Any],
                                   resource_version: str | None) -> dict[str, Any] | None:
        """The object as written (None if gone); a 409 when it moved on from RESOURCE_VERSION. Its
        managedFields carry this API server's clock, as the real answer's do."""
        self._request("patch", f"{plural}/status", name)
        if (plural, namespace, name) not in self.objects:
            return None
        patch: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        written = self._patch(plural, namespace, name, patch)
        stamp = [{"manager": "rotor", "operation": "Update", "subresource": "status",
                  "time": times.iso(self.clock())}]
        self.objects[(plural, namespace, name)]["metadata"]["managedFields"] = stamp
        return {**written, "metadata": {**written["metadata"], "managedFields": stamp}}

    async def set_finalizers(self, plural: str, namespace: str, name: str, finalizers: Sequence[str],
                             resource_version: str | None) -> None:
        self._request("patch", plural, name)
        self._patch(plural, namespace, name,
                    {"metadata": {"finalizers": list(finalizers) or None, "resourceVersion": resource_version}})

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._request("get", plural, name)
        return self.get(plural, namespace, name)

    async def post_event(self, *, kind: str, namespace: str, name: str, uid: str, type: str, reason: str,
                         message: str) -> None:
        try:
            self._request("create", "events", name)
        except KubeError:
            return  # best effort, as the real one
        self.events.append(event_body(kind=kind, namespace=namespace, name=name, uid=uid, type=type, reason=reason,
                                      message=message, now=self.clock(), instance="fake"))

    async def annotate(self, plural: str, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self._request("patch", plural, name)
        self._patch(plural, namespace, name, {"metadata": {"annotations": dict(annotations)}})

    async def list_workloads(self, namespace: str) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        for kind in ROLLED_OUT:
            self._request("list", BY_KIND[kind].plural)
            out.extend((kind, obj) for obj in self._listed(BY_KIND[kind].plural, namespace))
        return out

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._request("patch", BY_KIND[kind].plural, name)
        self._patch(BY_KIND[kind].plural, namespace, name, patch)

    async def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                           page: int = 500) -> list[dict[str, Any]]:
        assert plural != "secrets", "list Secrets with list_secret_metadata"
        self._request("list", plural)
        return self._listed(plural, namespace if plural != "namespaces" else None)

    async def create_object(self, plural: str, namespace: str, body: Mapping[str, Any], *,
                            field_manager: str = "rotor") -> dict[str, Any]:
        self._request("create", plural, str((body.get("metadata") or {}).get("name") or ""))
        return self._create(plural, namespace, body)

    async def patch_object(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._request("patch", plural, name)
        self._patch(plural, namespace, name, patch)

    async def delete_object(self, plural: str, namespace: str, name: str) -> bool:
        self._request("delete", plural, name)
        return self._remove(plural, namespace, name)
