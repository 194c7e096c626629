"""One SecretSync on the fakes, fed by the fake cluster's changes as the handlers feed it watch events."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

from rotor.api import keys
from rotor.engines.secretsource.worker import SecretSync
from rotor.kube import Kube
from rotor.planning.conditions import get_condition
from tests.fakes.backend import FakeBackend
from tests.fakes.kube import FakeKube

HMAC_KEY = b"k" * 32
NS = "team-a"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def vault_spec(**target: Any) -> dict[str, Any]:
    return {"provider": "vault", "serviceAccountName": "app", "vault": {"path": "app/db", "role": "app"},
            "target": target}


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    """FakeKube + FakeBackend + SecretSync. `live` False stops the watch (a lagging or broken one)."""

    def __init__(self, *, min_refresh: float = 10.0, kube: FakeKube | None = None,
                 backend: FakeBackend | None = None) -> None:
        """KUBE, BACKEND: an existing cluster and backend (another operator's, as after a restart)."""
        self.kube = kube or FakeKube()
        self.backend = backend or FakeBackend()
        self.clock = Clock()
        self.sync = SecretSync(cast(Kube, self.kube), {"vault": self.backend}, HMAC_KEY, min_refresh=min_refresh,
                               clock=self.clock)
        self.live = True
        self.to_sync: list[tuple[str, str]] = []  # what the watch asked to sync, in order
        self.kube.subscribe(self._watch)

    def _watch(self, event_type: str, plural: str, body: dict[str, Any]) -> None:
        if not self.live:
            return
        if plural == "secretsources":
            key, action = self.sync.observe_source(event_type, body)
            if action == "sync":
                self.to_sync.append(key)
        elif plural == "secrets" and (body["metadata"].get("labels") or {}).get(keys.MANAGED_BY) == "rotor":
            # As rotor.engines.secretfeed delivers it: metadata only, whole when the view asks for the data.
            whole = event_type != "DELETED" and self.sync.wants_data(body["metadata"])
            drifted = self.sync.observe_secret(event_type, body if whole else {"metadata": body["metadata"]}, whole)
            if drifted is not None:
                self.to_sync.append(drifted)

    def add_source(self, name: str = "db", spec: dict[str, Any] | None = None) -> tuple[str, str]:
        self.kube.put("secretsources", {"apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource",
                                        "metadata": {"name": name, "namespace": NS}, "spec": spec or vault_spec()})
        return (NS, name)

    def edit_spec(self, source: str = "db", **target: Any) -> None:
        """kubectl edit of spec.target: status and metadata stay (as the API server keeps them)."""
        body = self.kube.get("secretsources", NS, source)
        assert body is not None
        self.kube.put("secretsources", {**body, "spec": {**body["spec"], "target": target}})

    def start(self) -> None:
        run(self.sync.load_secrets([NS]))
        self.kube.requests.clear()

    def sync_now(self, key: tuple[str, str] = (NS, "db")) -> float | None:
        """One sync as Rotor asks for it (SourcesPort.sync_now): not held back by the early-sync bucket."""
        self.sync.wanted(key)
        return run(self.sync.sync(key))

    def sync_asked(self, key: tuple[str, str] = (NS, "db")) -> float | None:
        """One sync as a tenant's ask schedules it (refresh-now, a drift restore): the bucket applies."""
        return run(self.sync.sync(key))

    def ready(self, name: str = "db") -> dict[str, Any]:
        obj = self.kube.get("secretsources", NS, name)
        assert obj is not None
        return get_condition((obj.get("status") or {}).get("conditions"), keys.READY) or {}

    def status(self, name: str = "db") -> dict[str, Any]:
        obj = self.kube.get("secretsources", NS, name)
        assert obj is not None
        return dict(obj.get("status") or {})

    def data(self, name: str = "db") -> dict[str, bytes] | None:
        secret = self.kube.secret(NS, name)
        return dict(secret.data) if secret is not None else None

    def secret_writes(self) -> list[tuple[str, str, str]]:
        return [r for r in self.kube.writes() if r[1] == "secrets"]

    def events(self) -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in self.kube.events]
