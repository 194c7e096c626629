"""The SecretSource engine as other engines see it (rotor.engines.ports.Sources, CertificateRequests,
VersionPins)."""

from __future__ import annotations

from collections.abc import Hashable

from rotor.engines.ports import SourceView
from rotor.engines.scheduler import RefreshScheduler
from rotor.engines.secretsource.view import SyncView
from rotor.planning.incident_denylist import Scope


class SourcesPort:
    """Reads from the sync engine's view; `sync_now` goes through its scheduler (single-flight)."""

    def __init__(self, sync: SyncView, scheduler: RefreshScheduler) -> None:
        self._sync, self._scheduler = sync, scheduler

    @property
    def hmac_key(self) -> bytes:
        return self._sync.hmac_key

    def source(self, namespace: str, name: str) -> SourceView | None:
        return self._sync.source(namespace, name)

    def source_for_target(self, namespace: str, target: str) -> str | None:
        return self._sync.source_for_target(namespace, target)

    def sync_now(self, namespace: str, name: str) -> None:
        self._sync.wanted((namespace, name))  # Rotor's own request: not rate-limited like refresh-now
        self._scheduler.schedule((namespace, name), 0.0)

    def request_certificate(self, namespace: str, name: str, rotation_id: str) -> None:
        self._sync.certificate_requests[(namespace, name)] = rotation_id
        self.sync_now(namespace, name)

    def pin_version(self, namespace: str, name: str, version: str | None) -> None:
        key = (namespace, name)
        if self._sync.version_pins.get(key) == version:
            return
        if version is None:
            self._sync.version_pins.pop(key, None)
        else:
            self._sync.version_pins[key] = version
        self.sync_now(namespace, name)

    def set_denylist(self, owner: Hashable, digests: frozenset[str], scope: Scope | None = None) -> None:
        self._sync.set_denylist(owner, digests, scope)
