"""Restart readers when their Secrets change: batched, rate-limited, and never replayed.

Fed by watch events (managed Secrets, SecretSources, workloads) through the handlers; decides with
rotor.planning.reload; writes through rotor.kube. One background task does the work:

    change seen -> wait until the batch is quiet (window) -> plan each consuming workload
      -> adopt (record digests, no rollout) | restart (new pod-template hash) under the rate limits
      -> SecretSource status.consumers and the rotor_consumers gauge
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rotor.api import keys
from rotor.kube import Kube, KubeError
from rotor.observability.metrics import CONSUMERS, RESTARTS_DEFERRED, WORKLOAD_RESTARTS
from rotor.planning.hashing import data_hmac
from rotor.planning.reload import (
    Kind,
    Plan,
    RateLimits,
    Workload,
    admit_restarts,
    adopt_patch,
    batch_delay,
    consumed_secrets,
    consumer_counts,
    is_current,
    plan_reload,
    restart_patch,
    workload_from_body,
)
from rotor.planning.sync import ObservedSecret

log = logging.getLogger("rotor.engines.delivery.worker")

SecretKey = tuple[str, str]  # (namespace, name)
WorkloadKey = tuple[str, str, str]  # (kind, namespace, name)
_UNMANAGED = f"{keys.MANAGED_BY}!={keys.MANAGED_BY_VALUE}"


@dataclass
class _Digest:
    value: str | None  # "sha256:..." or None: the Secret does not exist
    managed: bool


class Reloader:
    """The restart executor. Handlers call observe_*; start() runs the loop until stop()."""

    def __init__(self, kube: Kube, hmac_key: bytes, *, window: float = 5.0, limits: RateLimits,
                 poll_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 gate: asyncio.Event | None = None) -> None:
        self.kube = kube
        self.gate = gate  # clear while this replica is a standby (peering): no round runs
        self.hmac_key = hmac_key
        self.window = window
        self.max_wait = window * 6  # a steady trickle of changes still flushes
        self.limits = limits
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.digests: dict[SecretKey, _Digest] = {}
        self.targets: dict[SecretKey, str] = {}  # (namespace, SecretSource) -> target Secret
        self.workloads: dict[WorkloadKey, Workload] = {}
        self._reported: dict[SecretKey, dict[str, int]] = {}  # status.consumers as last seen/written
        self._pending_secrets: set[SecretKey] = set()
        self._pending_workloads: set[WorkloadKey] = set()
        self._first: float | None = None
        self._last: float | None = None
        self._deferred: set[WorkloadKey] = set()
        self._retry_at: float | None = None
        self._history: deque[tuple[str, float]] = deque()
        self._dirty: set[str] = set()  # namespaces whose consumer counts may have changed
        self._next_poll = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- fed by the handlers --------------------------------------------------------------------

    def observe_secret(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        managed = (meta.get("labels") or {}).get(keys.MANAGED_BY) == keys.MANAGED_BY_VALUE
        value = None if event_type == "DELETED" else self._digest_of_body(body)
        self._record(key, _Digest(value, managed))

    def observe_source(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.targets.pop(key, None)
            self._reported.pop(key, None)
            return
        target = ((body.get("spec") or {}).get("target") or {}).get("name") or meta["name"]
        consumers = (body.get("status") or {}).get("consumers")
        if isinstance(consumers, dict):
            self._reported[key] = {str(k): int(v) for k, v in consumers.items()}
        if self.targets.get(key) != target:
            self.targets[key] = target
            for wkey, workload in self.workloads.items():
                if workload.namespace == key[0] and key[1] in workload.injected_sources:
                    self._pending_workloads.add(wkey)
            self._dirty.add(key[0])
            self._touch()

    def observe_workload(self, kind: Kind, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        workload = None if event_type == "DELETED" else workload_from_body(kind, body)
        previous = self.workloads.pop(key, None)
        if workload is None:
            self._deferred.discard(key)
            if previous is not None:
                self._dirty.add(key[1])
                self._wake.set()
            return
        self.workloads[key] = workload
        inputs = ("injected_sources", "referenced", "reload_on", "reload", "applied")
        if previous is None or any(getattr(previous, f) != getattr(workload, f) for f in inputs):
            self._pending_workloads.add(key)
            self._touch()
        if previous is None or (previous.rollout_complete, previous.template_hash) != (
                workload.rollout_complete, workload.template_hash):
            self._dirty.add(key[1])
            self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="rotor-reloader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # -- the loop -------------------------------------------------------------------------------

    def _digest_of_body(self, body: Mapping[str, Any]) -> str:
        import base64

        annotations = (body["metadata"].get("annotations") or {})
        if annotations.get(keys.DATA_HMAC):
            return str(annotations[keys.DATA_HMAC])  # Rotor's own digest of what it wrote
        data = {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()}
        return data_hmac(self.hmac_key, data, body.get("type") or "Opaque")

    def _digest_of(self, secret: ObservedSecret) -> str:
        if secret.annotations.get(keys.DATA_HMAC):
            return str(secret.annotations[keys.DATA_HMAC])
        return data_hmac(self.hmac_key, secret.data, secret.type)

    def _record(self, key: SecretKey, digest: _Digest) -> None:
        """A digest seen; a change from a known digest starts (or extends) a batch."""
        previous = self.digests.get(key)
        self.digests[key] = digest
        if previous is not None and previous.value != digest.value:
            self._pending_secrets.add(key)
            self._touch()

    def _touch(self) -> None:
        now = self.clock()
        self._first = now if self._first is None else self._first
        self._last = now
        self._wake.set()

    def _next_delay(self, now: float) -> float:
        delays = [max(0.0, self._next_poll - now) if self.poll_seconds > 0 else 3600.0]
        if self._first is not None and self._last is not None:
            delays.append(batch_delay(self._first, self._last, now, self.window, self.max_wait))
        if self._deferred and self._retry_at is not None:
            delays.append(max(0.0, self._retry_at - now))
        if self._dirty:
            delays.append(0.0)
        return min(delays)

    async def _loop(self) -> None:
        while True:
            if self.gate is not None and not self.gate.is_set():
                await self.gate.wait()
                continue
            now = self.clock()
            delay = self._next_delay(now)
            if delay > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    pass
                continue
            try:
                await self.step(now)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad round must not end reloads for the whole cluster
                log.exception("reload round failed; retrying in %.0fs", self.window)
                await asyncio.sleep(self.window)

    async def step(self, now: float) -> None:
        """One round: poll unmanaged Secrets, flush a due batch or due deferrals, report consumers."""
        if self.poll_seconds > 0 and now >= self._next_poll:
            self._next_poll = now + self.poll_seconds
            await self._poll_unmanaged()
        batch_due = (self._first is not None and self._last is not None
                     and batch_delay(self._first, self._last, now, self.window, self.max_wait) <= 0)
        retry_due = bool(self._deferred) and self._retry_at is not None and now >= self._retry_at
        if batch_due or retry_due:
            await self._flush(self.clock(), batch_due)
        if self._dirty:
            await self._report_consumers()

    async def _poll_unmanaged(self) -> None:
        """Secrets Rotor does not manage have no watch here: read the referenced ones' digests."""
        wanted: dict[str, set[str]] = {}
        for workload in self.workloads.values():
            consumed = consumed_secrets(workload, self._targets_in(workload.namespace)) or ()
            for name in consumed:
                known = self.digests.get((workload.namespace, name))
                if known is None or not known.managed:
                    wanted.setdefault(workload.namespace, set()).add(name)
        for namespace, names in wanted.items():
            try:
                secrets = {s.name: s for s in await self.kube.list_secrets(namespace, _UNMANAGED)}
            except KubeError as err:
                log.warning("cannot list Secrets in %s for reloads: %s", namespace, err.reason)
                continue
            for name in names:
                found = secrets.get(name)
                key = (namespace, name)
                if found is None and self.digests.get(key, _Digest(None, False)).managed:
                    continue  # managed (the watch keeps it), not missing
                self._record(key, _Digest(self._digest_of(found) if found else None, False))

    def _targets_in(self, namespace: str) -> dict[str, str]:
        return {source: target for (ns, source), target in self.targets.items() if ns == namespace}

    async def _digests_for(self, namespace: str, names: tuple[str, ...]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name in names:
            known = self.digests.get((namespace, name))
            if known is None:  # not seen yet (start-up, or unmanaged): ask once, then keep it current
                secret = await self.kube.read_secret(namespace, name)
                managed = secret is not None and secret.labels.get(keys.MANAGED_BY) == keys.MANAGED_BY_VALUE
                known = _Digest(self._digest_of(secret) if secret else None, managed)
                self.digests.setdefault((namespace, name), known)
            out[name] = known.value
        return out

    async def _flush(self, now: float, batch_due: bool) -> None:
        changed: set[SecretKey] = set()
        waiting = self._deferred  # deferred in an earlier round: counted once, when first deferred
        candidates: set[WorkloadKey] = set(waiting)
        if batch_due:
            changed, self._pending_secrets = self._pending_secrets, set()
            candidates |= self._pending_workloads
            self._pending_workloads = set()
            self._first = self._last = None
        self._deferred = set()
        self._retry_at = None
        for key, workload in self.workloads.items():
            consumed = consumed_secrets(workload, self._targets_in(workload.namespace)) or ()
            if any((workload.namespace, name) in changed for name in consumed):
                candidates.add(key)

        restarts: list[tuple[str, tuple[Workload, Plan]]] = []
        for key in sorted(candidates, key=lambda k: (k[1], k[0], k[2])):
            found = self.workloads.get(key)
            if found is None:
                continue
            workload = found
            consumed_or_none = consumed_secrets(workload, self._targets_in(workload.namespace))
            if consumed_or_none is None:
                continue  # an injected SecretSource is not known yet: its event will bring it back
            plan = plan_reload(workload, consumed_or_none,
                               await self._digests_for(workload.namespace, consumed_or_none))
            self._dirty.add(workload.namespace)
            if plan.decision == "adopt" and plan.applied is not None:
                await self._patch(workload, adopt_patch(workload, plan.applied), "adopted")
            elif plan.decision == "restart":
                restarts.append((workload.namespace, (workload, plan)))

        admission = admit_restarts(restarts, self._history, now, self.limits)
        for workload, plan in admission.admitted:
            assert plan.applied is not None
            if await self._patch(workload, restart_patch(workload, plan.applied), "restarted"):
                # Counted from when the patch was done, not when the round began: patches take time.
                self._history.append((workload.namespace, self.clock()))
                WORKLOAD_RESTARTS.labels(workload.namespace, workload.kind).inc()
                log.info("restarting %s %s/%s: Secret %s changed", workload.kind, workload.namespace,
                         workload.name, ", ".join(plan.changed))
        for (workload, _), scope in admission.deferred:
            self._deferred.add(workload.key)
            if workload.key not in waiting:
                RESTARTS_DEFERRED.labels(scope).inc()
        done = self.clock()
        while self._history and done - self._history[0][1] >= self.limits.window:
            self._history.popleft()
        if admission.deferred:
            # A slot opens when the oldest restart in the window leaves it.
            self._retry_at = self._history[0][1] + self.limits.window if self._history else done
            log.info("%d restart(s) deferred by the rate limits for %.1fs", len(admission.deferred),
                     self._retry_at - done)

    async def _patch(self, workload: Workload, patch: dict[str, Any], what: str) -> bool:
        try:
            await self.kube.patch_workload(workload.kind, workload.namespace, workload.name, patch)
        except KubeError as err:
            if err.conflict:  # changed since we looked: its watch event brings the new version
                self._pending_workloads.add(workload.key)
                self._touch()
            elif not err.not_found:
                log.warning("%s %s/%s not %s: %s", workload.kind, workload.namespace, workload.name, what,
                            err.message or err.reason)
            return False
        log.debug("%s %s %s/%s", what, workload.kind, workload.namespace, workload.name)
        return True

    async def _report_consumers(self) -> None:
        """status.consumers of each SecretSource and the per-namespace gauge, written when they change."""
        dirty, self._dirty = self._dirty, set()
        for namespace in sorted(dirty):
            targets = self._targets_in(namespace)
            views: list[tuple[str, tuple[str, ...], bool]] = []
            for workload in self.workloads.values():
                if workload.namespace != namespace:
                    continue
                consumed = consumed_secrets(workload, targets)
                if consumed is None:
                    continue
                digests = {n: d.value for n in consumed if (d := self.digests.get((namespace, n))) is not None}
                views.append((namespace, consumed, is_current(workload, consumed, digests)))
            per_secret, per_namespace = consumer_counts(views)
            totals = per_namespace.get(namespace, {"current": 0, "stale": 0})
            for version, count in totals.items():
                CONSUMERS.labels(namespace, version).set(count)
            for source, target in targets.items():
                counts = per_secret.get((namespace, target), {"current": 0, "stale": 0})
                reported = self._reported.get((namespace, source))
                if counts == reported or (reported is None and not any(counts.values())):
                    continue
                try:
                    await self.kube.patch_status("secretsources", namespace, source, {"consumers": counts})
                    self._reported[(namespace, source)] = counts
                except KubeError as err:
                    if not err.not_found:
                        log.warning("consumers of SecretSource %s/%s not reported: %s", namespace, source,
                                    err.reason)
