"""Carry out SecretSource syncs: fetch -> plan_sync -> one Kubernetes write (or none) -> status.

The view it reads and keeps current is engines.secretsource.view; what to write is planned in
planning.sync (the Secret) and planning.sync_status (status, Events, when to run again).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Hashable, Mapping, Sequence

from rotor.api import keys
from rotor.api.common import parse_duration
from rotor.backends.protocols import Backend, BackendError
from rotor.engines.secretsource.view import PLURAL, Key, SourceState, SyncView, parse_spec
from rotor.kube import Kube, KubeError
from rotor.observability.metrics import (
    DENYLIST_REFUSALS,
    DRIFT,
    PROPAGATION_SECONDS,
    SECRET_WRITES,
    SYNC_SECONDS,
    SYNCS,
)
from rotor.planning import times
from rotor.planning.sync import ObservedSecret, SyncPlan, plan_sync, target_name
from rotor.planning.sync_status import next_delay, ready_label, result_label, retry_delay, sync_status, write_failure

log = logging.getLogger("rotor.sync")

__all__ = ["PLURAL", "Key", "SecretSync", "SourceState", "parse_spec"]


class SecretSync(SyncView):
    """The view (SyncView) plus the I/O: one sync of one source at a time (the scheduler's single-flight)."""

    def __init__(self, kube: Kube, backends: Mapping[str, Backend], hmac_key: bytes, *,
                 denylist: frozenset[str] = frozenset()) -> None:
        super().__init__(hmac_key, denylist=denylist)
        self.kube = kube
        self.backends = backends
        self._rng = random.Random()

    async def load_secrets(self, namespaces: Sequence[str]) -> None:
        """Every managed Secret, once at start-up (before the watch starts; it keeps the view current after).
        Then a Secret missing from the view does not exist, and a first sync creates it without reading
        first (creationPolicy Merge still reads: it writes into a Secret Rotor does not manage). Should it
        exist after all (a lagging watch, a foreign Secret of that name), the create conflicts and the
        sync reads it and plans again."""
        selector = f"{keys.MANAGED_BY}={keys.MANAGED_BY_VALUE}"
        found: list[tuple[str, ObservedSecret]] = []
        scopes: list[str | None] = list(namespaces) or [None]
        for namespace in scopes:
            found.extend(await self.kube.list_labelled_secrets(selector, namespace))
        self.loaded(found)

    # -- one sync -------------------------------------------------------------------------------

    async def sync(self, key: Hashable) -> float | None:
        """Sync one source; returns seconds until it is due again (None: no longer exists)."""
        state = self.sources.get(key) if isinstance(key, tuple) else None
        if state is None:
            return None
        if state.deleting:
            return await self._finalize(state)
        if keys.CLEANUP_FINALIZER not in state.finalizers:
            # Before anything is written: deletionPolicy needs Rotor to see the deletion through.
            try:
                await self.kube.set_finalizers(PLURAL, state.namespace, state.name,
                                               (*state.finalizers, keys.CLEANUP_FINALIZER), state.resource_version)
            except KubeError as err:
                if err.not_found:
                    return None
                # A 409: the object moved on; its watch event brings the new version before the retry.
                return 1.0 if err.conflict else retry_delay(state.failures + 1, self._rng.random())
            if keys.CLEANUP_FINALIZER not in state.finalizers:  # unless its watch event came in meanwhile
                state.finalizers = (*state.finalizers, keys.CLEANUP_FINALIZER)
        if state.spec is None:
            await self._report(state, SyncPlan("fail", state.name, keys.INVALID_SPEC, state.spec_error or ""), None)
            return None  # nothing will change until the spec does
        spec = state.spec
        target = target_name(spec, state.name)
        started = time.monotonic()
        plan: SyncPlan
        try:
            backend = self.backends.get(spec.provider)
            if backend is None:
                raise KeyError(spec.provider)
            fetched = await backend.fetch(state.namespace, spec)
            existing = await self._existing(state.namespace, target, merge=spec.target.creation_policy == "Merge")
            plan = plan_sync(spec=spec, owner=state.owner, fetched=fetched, existing=existing,
                             hmac_key=self.hmac_key, denylist=self.denylist)
            plan = await self._apply(state, plan, existing, started)
        except BackendError as err:
            plan = SyncPlan("fail", target, err.reason, err.message)
        except KubeError as err:
            plan = write_failure(target, err.status, err.reason, err.message)
        SYNC_SECONDS.labels(spec.provider).observe(time.monotonic() - started)
        SYNCS.labels(spec.provider, result_label(plan)).inc()
        if plan.reason == keys.DENYLISTED:
            DENYLIST_REFUSALS.inc()
        state.failures = state.failures + 1 if plan.action == "fail" else 0
        delay = next_delay(plan, state.failures, self._rng.random(),
                           interval=parse_duration(spec.refresh.interval).total_seconds(), jitter=spec.refresh.jitter)
        if plan.action == "fail":
            log.warning("sync of SecretSource %s/%s failed: %s: %s (retry in %.0fs)",
                        state.namespace, state.name, plan.reason, plan.message, delay)
        elif plan.action != "none":
            log.info("SecretSource %s/%s: %s (version %s, %s)", state.namespace, state.name, plan.message,
                     plan.version or "-", plan.data_hmac)
        await self._report(state, plan, delay)
        return delay

    async def _existing(self, namespace: str, name: str, *, merge: bool) -> ObservedSecret | None:
        cached = self.secrets.get((namespace, name))
        # The view holds managed Secrets only: Merge must see a Secret someone else made.
        if cached is not None or (self._secrets_loaded and not merge):
            return cached
        return await self.kube.read_secret(namespace, name)

    async def _apply(self, state: SourceState, plan: SyncPlan, existing: ObservedSecret | None,
                     started: float) -> SyncPlan:
        if plan.secret is None or plan.action in ("none", "fail"):
            return plan
        try:
            written = await self.kube.write_secret(state.namespace, plan.action, plan.secret, state.owner, existing)
        except KubeError as err:
            if not err.conflict:
                raise
            # Our view was stale (someone else wrote, or the watch lags): read and plan once more.
            fresh = await self.kube.read_secret(state.namespace, plan.target)
            self.remember(state.namespace, plan.target, fresh)
            assert state.spec is not None
            fetched = await self.backends[state.spec.provider].fetch(state.namespace, state.spec)
            plan = plan_sync(spec=state.spec, owner=state.owner, fetched=fetched, existing=fresh,
                             hmac_key=self.hmac_key, denylist=self.denylist)
            if plan.secret is None or plan.action in ("none", "fail"):
                return plan
            written = await self.kube.write_secret(state.namespace, plan.action, plan.secret, state.owner, fresh)
        self.remember(state.namespace, plan.target, written)
        SECRET_WRITES.labels(plan.action).inc()
        if existing is not None and state.status.get("dataHmac") != plan.data_hmac:
            PROPAGATION_SECONDS.observe(time.monotonic() - started)  # new backend value -> Secret written
        if existing is not None and state.status.get("dataHmac") == plan.data_hmac:
            DRIFT.inc()  # the backend did not change; the Secret had been edited
        return plan

    async def _report(self, state: SourceState, plan: SyncPlan, delay: float | None) -> None:
        """Write status only when it changes; post an Event for changes and new failures."""
        old = state.status
        planned = sync_status(old, plan, generation=state.generation, now=times.now(), delay=delay)
        if planned.patch is not None:
            try:
                await self.kube.patch_status(PLURAL, state.namespace, state.name, planned.patch)
                state.status = {**old, **planned.patch}
            except KubeError as err:
                if not err.not_found:
                    log.warning("status of SecretSource %s/%s not written: %s", state.namespace, state.name,
                                err.reason)
        # Counted before the awaits below: meanwhile a watch event older than our patch may replace
        # state.status for a moment (the event of our own patch follows it).
        self.count_ready((state.namespace, state.name), ready_label(state.status))
        if planned.event is not None:
            await self.kube.post_event(kind="SecretSource", namespace=state.namespace, name=state.name,
                                       uid=state.uid, type=planned.event.type, reason=planned.event.reason,
                                       message=planned.event.message)

    # -- deletion -------------------------------------------------------------------------------

    async def _finalize(self, state: SourceState) -> float | None:
        """Apply deletionPolicy, then release the object: Delete removes what Rotor wrote; Retain
        leaves it and drops Rotor's owner reference. Safe to repeat after a failure or a crash."""
        try:
            if state.spec is not None:
                name = target_name(state.spec, state.name)
                secret = await self.kube.read_secret(state.namespace, name)
                if secret is not None and secret.labels.get(keys.SOURCE_LABEL) == state.name:
                    await self.kube.release_secret(state.namespace, secret, state.uid,
                                                   delete=state.spec.target.deletion_policy == "Delete",
                                                   merge=state.spec.target.creation_policy == "Merge")
            await self.kube.set_finalizers(PLURAL, state.namespace, state.name,
                                           [f for f in state.finalizers if f != keys.CLEANUP_FINALIZER],
                                           state.resource_version)
        except KubeError as err:
            if err.not_found:
                return None
            if err.conflict:
                return 1.0  # the object moved on; its watch event brings the new version first
            state.failures += 1
            delay = retry_delay(state.failures, self._rng.random())
            log.warning("cleanup of deleted SecretSource %s/%s failed: %s (retry in %.0fs)", state.namespace,
                        state.name, err.reason, delay)
            return delay
        return None  # its DELETED event forgets it
