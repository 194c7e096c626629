"""Kubernetes backend: copy a Secret from another namespace whose owner explicitly allows it.

The source Secret must carry the annotation rotor.dev/allowed-namespaces listing the reading
namespace (or "*"). Without that consent Rotor refuses, so a tenant cannot pull another team's
Secret just by naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

from rotor.api.capabilities import Capability
from rotor.api.keys import ALLOWED_NAMESPACES
from rotor.api.secretsource import KubernetesSource, SecretSourceSpec
from rotor.backends.protocols import Actor, InvalidSpec, NotFound, PermissionDenied
from rotor.observability.secrecy import remember
from rotor.planning.sync import Fetched, ObservedSecret

SecretReader = Callable[[str, str], Awaitable[ObservedSecret | None]]


@dataclass(frozen=True)
class SourceSecret:
    """A handle on a Secret of another namespace: a location, nothing to act on."""

    where: str
    actor: str


class KubernetesBackend:
    provider: ClassVar[str] = "kubernetes"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.READ})

    def __init__(self, read_secret: SecretReader) -> None:
        self._read = read_secret

    def describe(self, namespace: str, spec: SecretSourceSpec) -> str:
        source = _source(spec)
        return f"kubernetes:{source.namespace}/{source.name}"

    async def fetch(self, namespace: str, spec: SecretSourceSpec) -> Fetched:
        source = _source(spec)
        secret = await self._read(source.namespace, source.name)
        if secret is None:
            raise NotFound(f"Secret {source.namespace}/{source.name} does not exist")
        allowed = {n.strip() for n in secret.annotations.get(ALLOWED_NAMESPACES, "").split(",") if n.strip()}
        if namespace not in allowed and "*" not in allowed:
            raise PermissionDenied(
                f"Secret {source.namespace}/{source.name} does not allow namespace {namespace}: its owner must add "
                f"{namespace} to the annotation {ALLOWED_NAMESPACES}")
        return Fetched(remember(dict(secret.data)), secret.resource_version)

    def bind(self, namespace: str, spec: SecretSourceSpec, actor: Actor | None = None) -> SourceSecret:
        """The source Secret: read-only (no capability beyond reading)."""
        source = _source(spec)
        return SourceSecret(f"kubernetes:{source.namespace}/{source.name}", f"{namespace}/rotor")

    async def close(self) -> None:
        return None


def _source(spec: SecretSourceSpec) -> KubernetesSource:
    if spec.kubernetes is None:
        raise InvalidSpec("spec.kubernetes is required when spec.provider is kubernetes")
    return spec.kubernetes
