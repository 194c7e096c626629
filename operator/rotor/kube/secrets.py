"""Secrets: read, write (create, optimistic replace, recreate), release, delete, list.

The bodies are planned in rotor.planning.kube_bodies; here they are only sent.
"""

from __future__ import annotations

import secrets as _random
from typing import Any

from rotor.kube.errors import KubeError
from rotor.kube.transport import Transport, api_path
from rotor.planning.kube_bodies import encode, released_secret, secret_body
from rotor.planning.sync import DesiredSecret, ObservedSecret, Owner


def _secret_path(namespace: str, name: str | None = None) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets" + (f"/{name}" if name else "")


class SecretsApi(Transport):
    async def read_secret(self, namespace: str, name: str) -> ObservedSecret | None:
        try:
            body = await self._json("get", "secrets", "GET", _secret_path(namespace, name))
        except KubeError as err:
            if err.not_found:
                return None
            raise
        return ObservedSecret.from_json(body)

    async def read_secret_body(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret as the API server sends it (None: there is none)."""
        try:
            return await self._json("get", "secrets", "GET", _secret_path(namespace, name))
        except KubeError as err:
            if err.not_found:
                return None
            raise

    async def write_secret(self, namespace: str, action: str, desired: DesiredSecret, owner: Owner,
                           existing: ObservedSecret | None) -> ObservedSecret:
        """Create, replace (optimistically, on the observed resourceVersion) or recreate the Secret."""
        if action in ("create", "recreate"):
            if action == "recreate":
                await self.delete_secret(namespace, desired.name)
            created = await self._json("create", "secrets", "POST", _secret_path(namespace),
                                       secret_body(namespace, desired, owner))
            return ObservedSecret.from_json(created)
        assert existing is not None
        replaced = await self._json("replace", "secrets", "PUT", _secret_path(namespace, desired.name),
                                    secret_body(namespace, desired, owner, existing))
        return ObservedSecret.from_json(replaced)

    async def release_secret(self, namespace: str, secret: ObservedSecret, owner_uid: str, *, delete: bool,
                             merge: bool) -> None:
        """Undo Rotor's hold on a Secret when its SecretSource goes (deletionPolicy)."""
        body = released_secret(namespace, secret, owner_uid, delete=delete, merge=merge)
        if body is None:
            await self.delete_secret(namespace, secret.name)
            return
        await self._json("replace", "secrets", "PUT", _secret_path(namespace, secret.name), body, parse=False)

    async def delete_secret(self, namespace: str, name: str) -> bool:
        try:
            await self._json("delete", "secrets", "DELETE", _secret_path(namespace, name), parse=False)
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
        body = {"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "rotor"}},
                "data": encode({key: _random.token_bytes(32)})}
        try:
            await self._json("create", "secrets", "POST", _secret_path(namespace), body, parse=False)
        except KubeError as err:
            if not err.conflict:
                raise
        again = await self.read_secret(namespace, name)
        assert again is not None
        return bytes(again.data[key])

    async def list_secrets(self, namespace: str, label_selector: str = "") -> list[ObservedSecret]:
        """The Secrets of a namespace (for digests of Secrets Rotor does not manage; values stay here)."""
        return [secret for _, secret in await self.list_labelled_secrets(label_selector, namespace)]

    async def list_labelled_secrets(self, label_selector: str,
                                    namespace: str | None = None) -> list[tuple[str, ObservedSecret]]:
        """(namespace, Secret) for every Secret the selector matches, in NAMESPACE or cluster-wide."""
        found: list[tuple[str, ObservedSecret]] = []
        async for body in self._pages("secrets", api_path("", "v1", "secrets", namespace), 500,
                                      query=[("labelSelector", label_selector)] if label_selector else None):
            found.extend((item["metadata"]["namespace"], ObservedSecret.from_json(item))
                         for item in body.get("items") or ())
        return found
