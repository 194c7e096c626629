"""Restart readers when their Secrets change: batched, rate-limited, and never replayed.

The handlers feed the view (view.py) with watch events (managed Secrets, SecretSources, workloads);
decisions come from rotor.planning.reload; writes go through rotor.kube. One background task does
the work:

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
from typing import Any

from rotor.api import keys
from rotor.api.kinds import SECRET_SOURCE
from rotor.engines.delivery.view import Digest, ReloadView, WorkloadKey
from rotor.kube import Kube, KubeError
from rotor.observability.metrics import CONSUMERS, RESTARTS_DEFERRED, WORKLOAD_RESTARTS
from rotor.planning.reload import (
    Plan,
    RateLimits,
    Workload,
    admit_restarts,
    adopt_patch,
    plan_reload,
    report_consumers,
    restart_patch,
)

log = logging.getLogger("rotor.engines.delivery.worker")

_IDLE = 3600.0  # nothing pending and no polling: sleep until a watch event wakes the loop


class Reloader:
    """The restart executor. The handlers call view.observe_*; start() runs the loop until stop()."""

    def __init__(self, kube: Kube, hmac_key: bytes, *, window: float = 5.0, limits: RateLimits,
                 poll_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 gate: asyncio.Event | None = None) -> None:
        self.kube = kube
        self.gate = gate  # clear while this replica is a standby (peering): no round runs
        self.window = window
        self.max_wait = window * 6  # a steady trickle of changes still flushes
        self.limits = limits
        self.poll_seconds = poll_seconds
        self._polled: dict[tuple[str, str], str] = {}  # resourceVersion of each polled Secret's last read
        self.clock = clock
        self._wake = asyncio.Event()
        self.view = ReloadView(hmac_key, clock=clock, wake=self._wake.set)
        self._deferred: set[WorkloadKey] = set()  # restarts the rate limits held back
        self._retry_at: float | None = None
        self._history: deque[tuple[str, float]] = deque()  # (namespace, when) of recent restarts
        self._next_poll = 0.0
        self._task: asyncio.Task[None] | None = None

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

    def _next_delay(self, now: float) -> float:
        delays = [max(0.0, self._next_poll - now) if self.poll_seconds > 0 else _IDLE]
        batch = self.view.batch_delay(now, self.window, self.max_wait)
        if batch is not None:
            delays.append(batch)
        if self._deferred and self._retry_at is not None:
            delays.append(max(0.0, self._retry_at - now))
        if self.view.dirty:
            delays.append(0.0)
        return min(delays)

    async def _loop(self) -> None:
        while True:
            if self.gate is not None and not self.gate.is_set():
                await self.gate.wait()
                continue
            self._deferred.intersection_update(self.view.workloads)  # deleted ones need no slot
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
        batch = self.view.batch_delay(now, self.window, self.max_wait)
        batch_due = batch is not None and batch <= 0
        retry_due = bool(self._deferred) and self._retry_at is not None and now >= self._retry_at
        if batch_due or retry_due:
            await self._flush(self.clock(), batch_due)
        if self.view.dirty:
            await self._report_consumers()

    async def _poll_unmanaged(self) -> None:
        """Secrets the feed does not vouch for (not Rotor's) have no watch here: their namespace is listed as
        metadata, and a referenced one is read by name only when its resourceVersion moved (a Helm release
        or a large Secret nobody changed costs no read, and no value is listed)."""
        wanted: dict[str, set[str]] = {}
        for workload in self.view.workloads.values():
            for name in self.view.consumed(workload) or ():
                known = self.view.digests.get((workload.namespace, name))
                if known is None or not known.managed:
                    wanted.setdefault(workload.namespace, set()).add(name)
        for namespace, names in wanted.items():
            try:
                listed = {item["metadata"]["name"]: item["metadata"]
                          for item in await self.kube.list_secret_metadata(namespace)}
                for name in sorted(names):
                    await self._poll_one(namespace, name, listed.get(name))
            except KubeError as err:
                log.warning("cannot list Secrets in %s for reloads: %s", namespace, err.reason)

    async def _poll_one(self, namespace: str, name: str, meta: Mapping[str, Any] | None) -> None:
        key = (namespace, name)
        known = self.view.digests.get(key)
        if known is not None and known.managed:
            return  # the managed-Secret feed keeps it current
        version = meta.get("resourceVersion") if meta is not None else None
        if meta is None:
            value = None
        elif (meta.get("annotations") or {}).get(keys.DATA_HMAC):
            value = str(meta["annotations"][keys.DATA_HMAC])
        elif known is not None and version is not None and self._polled.get(key) == version:
            return  # unchanged since it was last read
        else:
            secret = await self.kube.read_secret(namespace, name)
            value = self.view.digest_of(secret) if secret is not None else None
        if version is None:
            self._polled.pop(key, None)
        else:
            self._polled[key] = version
        self.view.record(key, Digest(value, False))

    async def _digests_for(self, namespace: str, names: tuple[str, ...]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name in names:
            known = self.view.digests.get((namespace, name))
            if known is None:  # not seen yet (start-up, or unmanaged): ask once, then keep it current
                secret = await self.kube.read_secret(namespace, name)
                managed = secret is not None and secret.labels.get(keys.MANAGED_BY) == keys.MANAGED_BY_VALUE \
                    and bool(secret.annotations.get(keys.DATA_HMAC))
                known = Digest(self.view.digest_of(secret) if secret else None, managed)
                self.view.digests.setdefault((namespace, name), known)
            out[name] = known.value
        return out

    def _candidates(self, batch_due: bool) -> tuple[set[WorkloadKey], set[WorkloadKey]]:
        """The workloads to plan this round (and those already deferred in an earlier one)."""
        waiting, self._deferred, self._retry_at = self._deferred, set(), None
        candidates = set(waiting)
        if batch_due:
            changed, replan = self.view.take_batch()
            candidates |= replan
            for key, workload in self.view.workloads.items() if changed else ():
                if any((workload.namespace, n) in changed for n in self.view.consumed(workload) or ()):
                    candidates.add(key)
        return candidates, waiting

    async def _flush(self, now: float, batch_due: bool) -> None:
        candidates, waiting = self._candidates(batch_due)
        restarts: list[tuple[str, tuple[Workload, Plan]]] = []
        for key in sorted(candidates, key=lambda k: (k[1], k[0], k[2])):
            workload = self.view.workloads.get(key)
            if workload is None:
                continue
            consumed = self.view.consumed(workload)
            if consumed is None:
                continue  # an injected SecretSource is not known yet: its event will bring it back
            plan = plan_reload(workload, consumed, await self._digests_for(workload.namespace, consumed))
            self.view.dirty.add(workload.namespace)
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
            if workload.key not in waiting:  # counted once, when first deferred
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
                self.view.replan(workload.key)
            elif not err.not_found:
                log.warning("%s %s/%s not %s: %s", workload.kind, workload.namespace, workload.name, what,
                            err.message or err.reason)
            return False
        log.debug("%s %s %s/%s", what, workload.kind, workload.namespace, workload.name)
        return True

    async def _report_consumers(self) -> None:
        """status.consumers of each SecretSource and the per-namespace gauge, written when they change."""
        for namespace in sorted(self.view.take_dirty()):
            workloads = list(self.view.workloads_in(namespace))
            names = {n for w in workloads for n in self.view.consumed(w) or ()}
            reported: Mapping[str, Mapping[str, int]] = {
                source: counts for (ns, source), counts in self.view.reported.items() if ns == namespace}
            report = report_consumers(namespace, workloads, self.view.targets_in(namespace),
                                      self.view.known_digests(namespace, names), reported)
            for version, count in report.totals.items():
                CONSUMERS.labels(namespace, version).set(count)
            for source, counts in report.changed.items():
                try:
                    await self.kube.patch_status(SECRET_SOURCE.plural, namespace, source, {"consumers": dict(counts)})
                    self.view.reported[(namespace, source)] = dict(counts)
                except KubeError as err:
                    if not err.not_found:
                        log.warning("consumers of SecretSource %s/%s not reported: %s", namespace, source,
                                    err.reason)
