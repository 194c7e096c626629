"""A Sources port that records sync_now calls, and sources as the sync engine's view holds them."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from rotor.api.secretsource import SecretSourceSpec
from rotor.planning.incident_denylist import Scope


@dataclass
class Source:
    namespace: str
    name: str
    spec: SecretSourceSpec | None
    status: dict[str, Any] = field(default_factory=dict)


def vault_source(namespace: str, name: str, path: str, *, mount: str = "secret",
                 connection: str = "default") -> Source:
    spec = SecretSourceSpec.model_validate({"provider": "vault", "vault": {
        "path": path, "mount": mount, "role": "r", "connection": connection}})
    return Source(namespace, name, spec)


class FakeSources:
    """rotor.engines.ports.Sources over a dict of sources; sync_now is recorded, not run."""

    def __init__(self, *sources: Source) -> None:
        self.by_key = {(s.namespace, s.name): s for s in sources}
        self.deleting: set[tuple[str, str]] = set()
        self.synced: list[tuple[str, str]] = []

    def listing(self) -> list[Source]:
        return list(self.by_key.values())

    @property
    def hmac_key(self) -> bytes:
        return b"k" * 32

    def source(self, namespace: str, name: str) -> Source | None:
        key = (namespace, name)
        return None if key in self.deleting else self.by_key.get(key)

    def source_for_target(self, namespace: str, target: str) -> str | None:
        return None

    def sync_now(self, namespace: str, name: str) -> None:
        self.synced.append((namespace, name))

    def set_denylist(self, owner: Hashable, digests: frozenset[str], scope: Scope | None = None) -> None:
        pass
