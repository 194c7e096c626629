"""The rotation engine on fakes: FakeKube, FakeBackend (a Vault-like secret at secret/a/db) and a plain
stand-in for the SecretSource engine (rotor.engines.ports.Sources) that delivers the latest version
when asked to sync. Time is a FakeClock moved by the test; nothing sleeps."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rotor.api.keys import ROTATE_NOW
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.engines.rotation.worker import Rotator
from tests.fakes.backend import FakeBackend, FakeClock
from tests.fakes.kube import FakeKube

NS, NAME = "a", "db"
KEY = (NS, NAME)
MOUNT, PATH = "secret", "a/db"
T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
# Operations that change something in the backend (FakeBackend.calls records every call).
WRITES = frozenset({"kv-write", "kv-destroy", "kv-metadata-write", "dynamic-issue", "lease-renew", "lease-revoke",
                    "static-rotate"})
PLURAL = "rotationpolicies"


@dataclass
class Source:
    namespace: str
    name: str
    spec: SecretSourceSpec | None
    status: dict[str, Any] = field(default_factory=dict)


class Sources:
    """rotor.engines.ports.Sources: sync_now delivers the backend's latest version at once (unless
    `deliver` is off, as when the sync engine cannot keep up)."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.sources: dict[tuple[str, str], Source] = {}
        self.synced: list[tuple[str, str]] = []
        self.deliver = True

    def source(self, namespace: str, name: str) -> Source | None:
        return self.sources.get((namespace, name))

    def source_for_target(self, namespace: str, target: str) -> str | None:
        return None

    def sync_now(self, namespace: str, name: str) -> None:
        self.synced.append((namespace, name))
        found = self.sources.get((namespace, name))
        if self.deliver and found is not None:
            found.status["syncedVersion"] = str(self.backend.secrets[(MOUNT, PATH)].current)

    def set_denylist(self, owner: object, digests: frozenset[str]) -> None:
        return None


class FencedKube(FakeKube):
    """FakeKube whose guarded status writes can let the event loop run something else first, as a
    request does (replicas acting at once interleave)."""

    yielding = False

    async def patch_status_guarded(self, plural: str, namespace: str, name: str, status: Mapping[str, Any],
                                   resource_version: str | None) -> dict[str, Any] | None:
        if self.yielding:
            await asyncio.sleep(0)
        return await super().patch_status_guarded(plural, namespace, name, status, resource_version)


class SkewedClock:
    """Another clock OFFSET from CLOCK (a backend whose clock is ahead or behind Rotor's)."""

    def __init__(self, clock: FakeClock, offset: datetime.timedelta) -> None:
        self.clock, self.offset = clock, offset

    def __call__(self) -> datetime.datetime:
        return self.clock() + self.offset


class World:
    """Namespace a: SecretSource db (Secret db-creds) over secret/a/db, a RotationPolicy db rotating it."""

    def __init__(self, *, backend: FakeBackend | None = None, backend_skew: datetime.timedelta | None = None,
                 kube_skew: datetime.timedelta | None = None, data: dict[str, str] | None = None) -> None:
        self.clock = FakeClock(T0)
        self.backend = backend or FakeBackend(clock=self.clock)
        self.backend.clock = SkewedClock(self.clock, backend_skew) if backend_skew else self.clock  # type: ignore[assignment]
        self.kube = FencedKube(clock=SkewedClock(self.clock, kube_skew) if kube_skew else self.clock)
        self.sources = Sources(self.backend)
        self.rotator = self.start_operator()
        self.deleted: list[str] = []
        # As the handlers do: every change of a policy reaches the rotator's view.
        self.kube.subscribe(self._watch)
        self.backend.put(MOUNT, PATH, data if data is not None else {"username": "app", "password": "first"})

    def start_operator(self) -> Rotator:
        """A fresh operator process: nothing in memory; policies come back from the API as stored."""
        self.rotator = self.another_operator()
        return self.rotator

    def another_operator(self) -> Rotator:
        """An operator process on the same API server and backend (a second active replica), fed by the
        same watch as the handlers feed it."""
        rotator = Rotator(self.kube, {self.backend.provider: self.backend}, self.sources, clock=self.clock)
        for (plural, _, _), body in list(self.kube.objects.items()):
            if plural == PLURAL:
                rotator.upsert(body)
        return rotator

    def _watch(self, kind: str, plural: str, body: dict[str, Any]) -> None:
        if plural != PLURAL:
            return
        if kind == "DELETED":
            self.deleted.append(body["metadata"]["name"])
            self.rotator.forget((body["metadata"]["namespace"], body["metadata"]["name"]))
        else:
            self.rotator.observe(body)

    # -- set-up ----------------------------------------------------------------------------------------

    def source(self, raw: dict[str, Any] | None = None, *, ready: bool = True) -> Source:
        spec = raw or {"provider": "vault", "serviceAccountName": "app", "target": {"name": "db-creds"},
                       "vault": {"path": PATH, "role": "reader"}}
        condition = {"type": "Ready", "status": "True" if ready else "False", "reason": "Synced"}
        found = Source(NS, NAME, SecretSourceSpec.model_validate(spec),
                       {"conditions": [condition], "syncedVersion": "1"})
        self.sources.sources[(NS, NAME)] = found
        return found

    def policy(self, **spec: Any) -> dict[str, Any]:
        """The RotationPolicy, created a month ago: its first rotation is due now."""
        raw: dict[str, Any] = {"secretSourceRef": {"name": NAME}, "strategy": "overlap",
                               "schedule": {"interval": "720h"}, "overlap": {"window": "10m"},
                               "verify": {"timeout": "5m"}, "deadline": "1h"}
        raw.update(spec)
        RotationPolicySpec.model_validate(raw)  # a typo in a test fails here, not as InvalidSpec
        created = (T0 - datetime.timedelta(days=31)).isoformat().replace("+00:00", "Z")
        body = self.kube.put(PLURAL, {"apiVersion": "rotor.dev/v1alpha1", "kind": "RotationPolicy",
                                      "metadata": {"namespace": NS, "name": NAME, "creationTimestamp": created},
                                      "spec": raw})
        self.rotator.upsert(body)
        return body

    def workload(self, *, ready: bool, conditions: list[dict[str, Any]] | None = None) -> None:
        """A Deployment reading Secret db-creds, rolled out and Ready or not."""
        replicas = 2 if ready else 1
        self.kube.put("deployments", {
            "metadata": {"namespace": NS, "name": "app", "generation": 1},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "envFrom": [{"secretRef": {"name": "db-creds"}}]}]}}},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": replicas,
                       "availableReplicas": replicas, "conditions": conditions or []}})

    # -- driving -----------------------------------------------------------------------------------------

    async def step(self) -> float | None:
        return await self.rotator.step(KEY)

    async def run(self, until: str = "Complete", *, steps: int = 1000) -> None:
        """Step (moving the clock by each wait) until status.phase is UNTIL."""
        for _ in range(steps):
            wait = await self.step()
            if self.status.get("phase") == until:
                return
            if wait is None:
                raise AssertionError(f"the policy stopped in phase {self.status.get('phase')}: {self.ready}")
            self.clock.advance(wait)
        raise AssertionError(f"phase {until} not reached; stuck in {self.status.get('phase')}: {self.ready}")

    async def idle_until(self, moment: datetime.datetime) -> None:
        """Step as the scheduler would (each step when the last one asked) until MOMENT."""
        while self.clock() < moment:
            wait = await self.step()
            self.clock.advance(min(wait if wait is not None else 3600.0,
                                   (moment - self.clock()).total_seconds()) or 0.001)

    # -- inspection --------------------------------------------------------------------------------------

    @property
    def status(self) -> dict[str, Any]:
        stored = self.kube.get(PLURAL, NS, NAME)
        assert stored is not None
        return dict(stored.get("status") or {})

    @property
    def ready(self) -> dict[str, Any]:
        return next((c for c in self.status.get("conditions") or [] if c["type"] == "Ready"), {})

    @property
    def phases(self) -> list[str]:
        return [s["phase"] for s in (self.status.get("rotation") or {}).get("steps") or []]

    def kv(self, version: str | None = None) -> dict[str, str]:
        secret = self.backend.secrets[(MOUNT, PATH)]
        return dict(secret.versions[int(version) if version else secret.current].data)

    def alive_versions(self) -> list[int]:
        return sorted(v for v, found in self.backend.secrets[(MOUNT, PATH)].versions.items() if not found.destroyed)

    def count(self, operation: str, where: str = "") -> int:
        return sum(1 for op, at in self.backend.calls if op == operation and where in at)

    def writes(self) -> list[tuple[str, str]]:
        return [call for call in self.backend.calls if call[0] in WRITES]

    async def rotate_now(self, value: str = "1") -> None:
        """`rotor rotate`: a new rotor.dev/rotate-now value on the policy."""
        await self.kube.annotate(PLURAL, NS, NAME, {ROTATE_NOW: value})
