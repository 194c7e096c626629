"""Secret backends. Each is one module implementing rotor.backends.base.Backend."""

from __future__ import annotations

import datetime

from rotor.backends.base import Backend, InvalidSpec, PermissionDenied, Unavailable
from rotor.backends.kubernetes import KubernetesBackend
from rotor.backends.vault import VaultBackend
from rotor.config import Settings
from rotor.kube import Kube, KubeError


def build(settings: Settings, kube: Kube) -> dict[str, Backend]:
    """One backend per provider name, as spec.provider names them."""

    async def request_token(namespace: str, service_account: str, audience: str,
                            seconds: int) -> tuple[str, datetime.datetime]:
        try:
            return await kube.request_token(namespace, service_account, audience, seconds)
        except KubeError as err:
            who = f"ServiceAccount {namespace}/{service_account}"
            if err.not_found:
                raise InvalidSpec(f"{who} does not exist: create it, or fix spec.serviceAccountName") from None
            if err.status == 403:
                raise PermissionDenied(f"Rotor may not request a token for {who}: {err.message}") from None
            raise Unavailable(f"token request for {who} failed: HTTP {err.status} {err.reason}") from None

    return {
        VaultBackend.provider: VaultBackend(settings.vault_connections, request_token),
        KubernetesBackend.provider: KubernetesBackend(kube.read_secret),
    }
