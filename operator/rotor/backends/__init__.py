"""Secret backends. Each is one module implementing rotor.backends.base.Backend."""

from __future__ import annotations

from rotor.backends.base import Backend
from rotor.backends.kubernetes import KubernetesBackend
from rotor.backends.vault import VaultBackend
from rotor.config import Settings
from rotor.kube import Kube


def build(settings: Settings, kube: Kube) -> dict[str, Backend]:
    """One backend per provider name, as spec.provider names them."""
    return {
        VaultBackend.provider: VaultBackend(settings.vault_connections, kube.request_token),
        KubernetesBackend.provider: KubernetesBackend(kube.read_secret),
    }
