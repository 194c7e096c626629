"""Rotor's own objects (SecretSource, RotationPolicy, LeakIncident): status, finalizers, metadata,
create and delete; and the Events about them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from rotor import GROUP, VERSION
from rotor.kube.errors import KubeError
from rotor.kube.transport import Transport, api_path
from rotor.planning import times
from rotor.planning.kube_bodies import event_body

_MERGE = "application/merge-patch+json"


class ObjectsApi(Transport):
    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any], *,
                           missing_ok: bool = False) -> bool:
        """Merge-patch a Rotor object's status; with missing_ok, False if the object is gone."""
        try:
            await self._json("patch", f"{plural}/status", "PATCH",
                             f"{api_path(GROUP, VERSION, plural, namespace)}/{name}/status",
                             {"status": dict(status)}, content_type=_MERGE, parse=False)
        except KubeError as err:
            if missing_ok and err.not_found:
                return False
            raise
        return True

    async def patch_status_guarded(self, plural: str, namespace: str, name: str, status: Mapping[str, Any],
                                   resource_version: str | None) -> dict[str, Any] | None:
        """Merge-patch a Rotor object's status only if the object is still at RESOURCE_VERSION (a 409
        KubeError when another writer moved it on; None: no precondition). The object as written (its
        new resourceVersion, its managedFields stamped by the API server's clock), or None if it is gone."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return await self._json("patch", f"{plural}/status", "PATCH",
                                     f"{api_path(GROUP, VERSION, plural, namespace)}/{name}/status", body,
                                     content_type=_MERGE)
        except KubeError as err:
            if err.not_found:
                return None
            raise

    async def set_finalizers(self, plural: str, namespace: str, name: str, finalizers: Sequence[str],
                             resource_version: str | None) -> None:
        """Replace a Rotor object's finalizers, only if it is still at RESOURCE_VERSION (a 409 otherwise):
        the list is written whole, so a finalizer someone added meanwhile must not be dropped."""
        await self._json("patch", plural, "PATCH", f"{api_path(GROUP, VERSION, plural, namespace)}/{name}",
                         {"metadata": {"finalizers": list(finalizers) or None, "resourceVersion": resource_version}},
                         content_type=_MERGE, parse=False)

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await self._json("get", plural, "GET", f"{api_path(GROUP, VERSION, plural, namespace)}/{name}")
        except KubeError as err:
            if err.not_found:
                return None
            raise
        return dict(obj)

    async def post_event(self, *, kind: str, namespace: str, name: str, uid: str, type: str, reason: str,
                         message: str) -> None:
        body = event_body(kind=kind, namespace=namespace, name=name, uid=uid, type=type, reason=reason,
                          message=message, now=times.now(), instance=os.environ.get("HOSTNAME", "rotor"))
        try:
            await self._json("create", "events", "POST", f"/api/v1/namespaces/{namespace}/events", body, parse=False)
        except KubeError:
            pass  # events are best effort; the status already says the same

    async def annotate(self, plural: str, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        """Merge annotations into a Rotor object (e.g. rotor.dev/rotate-now)."""
        await self.patch_object(plural, namespace, name, {"metadata": {"annotations": dict(annotations)}})

    async def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                           page: int = 500) -> list[dict[str, Any]]:
        """Every object of a kind as plain JSON, one page at a time. Not for Secrets (their data)."""
        assert plural != "secrets", "list Secrets with list_secret_metadata"
        found: list[dict[str, Any]] = []
        async for body in self._pages(plural, api_path(group, version, plural, namespace), page):
            found.extend(body.get("items") or ())
        return found

    async def create_object(self, plural: str, namespace: str, body: Mapping[str, Any], *,
                            field_manager: str = "rotor") -> dict[str, Any]:
        """Create a Rotor object (a LeakIncident from `rotor leak report`, an emergency RotationPolicy)."""
        result = await self._json("create", plural, "POST", api_path(GROUP, VERSION, plural, namespace), dict(body),
                                  query=[("fieldManager", field_manager)])
        return dict(result)

    async def patch_object(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch a Rotor object's metadata or spec (rotate-now annotation, tightened schedule)."""
        await self._json("patch", plural, "PATCH", f"{api_path(GROUP, VERSION, plural, namespace)}/{name}",
                         dict(patch), content_type=_MERGE, parse=False)

    async def delete_object(self, plural: str, namespace: str, name: str) -> bool:
        try:
            await self._json("delete", plural, "DELETE", f"{api_path(GROUP, VERSION, plural, namespace)}/{name}",
                             parse=False)
        except KubeError as err:
            if err.not_found:
                return False
            raise
        return True
