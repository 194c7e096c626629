"""Carry out SecretSource syncs: fetch -> plan_sync -> one Kubernetes write (or none) -> status.

The view it reads and keeps current is engines.secretsource.view; what to write is planned in
planning.sync (the Secret) and planning.sync_status (status, Events, when to run again).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Hashable, Mapping, Sequence

from rotor.api import keys
from rotor.api.common import parse_duration
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import Backend, BackendError, Unavailable
from rotor.engines.ports import FeedHealth
from rotor.engines.secretsource.backstop import Backstop
from rotor.engines.secretsource.certificates import digests, intact, issue, pki_of, rotation_of
from rotor.engines.secretsource.release import let_go_of_old_target, release
from rotor.engines.secretsource.report import Reporter
from rotor.engines.secretsource.sandbox import InlineRenderer, Renderer
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
from rotor.planning.certificates import plan_certificate, until_renewal
from rotor.planning.sync import (
    Fetched,
    ObservedSecret,
    PlanError,
    SyncPlan,
    check_size,
    plan_sync,
    select_values,
    target_name,
)
from rotor.planning.sync_status import (
    EARLY_BURST,
    interval_notice,
    next_delay,
    ready_label,
    result_label,
    retry_delay,
    write_failure,
)
from rotor.planning.template import TemplateFailure

log = logging.getLogger("rotor.sync")

__all__ = ["PLURAL", "Key", "SecretSync", "SourceState", "parse_spec"]


class SecretSync(SyncView):
    """The view (SyncView) plus the I/O: one sync of one source at a time (the scheduler's single-flight)."""

    def __init__(self, kube: Kube, backends: Mapping[str, Backend], hmac_key: bytes, *,
                 denylist: frozenset[str] = frozenset(), renderer: Renderer | None = None,
                 min_refresh: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 feeds: FeedHealth | None = None) -> None:
        """RENDERER renders templates (the operator's runs them in killable child processes);
        MIN_REFRESH (seconds) is the shortest refresh interval, and the rate of syncs a source may
        have ahead of its schedule (refresh-now, drift restores). FEEDS: the change feeds, if any
        (while one is healthy, its sources' timer refreshes wait: engines.secretsource.backstop)."""
        super().__init__(hmac_key, denylist=denylist)
        self.kube = kube
        self.backends = backends
        self.renderer: Renderer = renderer or InlineRenderer()
        self.min_refresh = min_refresh
        self._clock = clock
        self._rng = random.Random()
        self.backstop = Backstop(feeds, minimum=min_refresh, clock=clock, rng=self._rng)
        self._report = Reporter(kube, self.backstop, self.count_ready)
        # Keyed digests of the certificates written (spec.vault.pki): an edit of tls.key is seen (no values).
        self._certificates: dict[tuple[str, str], dict[str, str]] = {}

    async def close(self) -> None:
        await self.renderer.close()

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
            # Metadata only: no value leaves the API server, and a forged label costs a few bytes.
            found.extend((item["metadata"]["namespace"], ObservedSecret.from_metadata(item))
                         for item in await self.kube.list_secret_metadata(namespace, label_selector=selector))
        self.loaded(found)

    # -- one sync -------------------------------------------------------------------------------

    async def sync(self, key: Hashable) -> float | None:
        """Sync one source; returns seconds until it is due again (None: no longer exists)."""
        state = self.sources.get(key) if isinstance(key, tuple) else None
        if state is None:
            return None
        if state.deleting:
            return await self._finalize(state)
        timer = not (state.urgent or state.asked)  # its own schedule asked for this run, nothing else did
        wait = self._hold_back(state)
        if wait is not None:
            return wait
        state.asked = False
        wait = self.backstop.hold(state, timer=timer)
        if wait is not None:  # the change feed has seen every change since the last read: nothing to read
            await self._report.feed(state)
            return wait
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
        pki = pki_of(spec)
        certificate: dict[str, str] | None = None
        requested: str | None = None
        if pki is not None:  # a certificate is issued (planning.certificates), not read
            held = intact(self.secrets.get((state.namespace, target)), state.status.get("dataHmac"),
                          self._certificates.get((state.namespace, target)))
            requested = self.certificate_requests.get((state.namespace, state.name))
            due = plan_certificate(state.status, generation=state.generation, secret_intact=held, now=times.now(),
                                   requested=requested)
            if not due.due:
                self.count_ready((state.namespace, state.name), ready_label(state.status))  # e.g. after a restart
                state.next_due = self._clock() + due.wait
                return due.wait
            log.info("SecretSource %s/%s: issuing a certificate (%s)", state.namespace, state.name, due.why)
        started, read_at, state.read_at = time.monotonic(), self._clock(), None
        plan: SyncPlan
        try:
            if pki is not None:
                fetched, certificate = await issue(self.backends.get(spec.provider), state.namespace, spec, pki,
                                                   self._rng.random(), rotation_of(requested, state.status))
            else:
                fetched = await self._fetch(state.namespace, self._pinned(state, spec))
            values = await self._values(spec, target, fetched)
            if isinstance(values, SyncPlan):
                plan = values
            else:
                existing = await self._existing(state.namespace, target,
                                                merge=spec.target.creation_policy == "Merge")
                plan = plan_sync(spec=spec, owner=state.owner, fetched=fetched, existing=existing,
                                 hmac_key=self.hmac_key, denylist=self._denylist(state.namespace, spec), values=values)
                if plan.action == "read":  # the view's summary cannot decide: the Secret itself can
                    existing = await self.kube.read_secret(state.namespace, target)
                    self.remember(state.namespace, target, existing)
                    plan = plan_sync(spec=spec, owner=state.owner, fetched=fetched, existing=existing,
                                     hmac_key=self.hmac_key, denylist=self._denylist(state.namespace, spec),
                                     values=values)
                plan = await self._apply(state, plan, existing, fetched, values, started)
                plan = await let_go_of_old_target(self.kube, state, plan)
        except BackendError as err:
            plan = SyncPlan("fail", target, err.reason, err.message)
        except KubeError as err:
            plan = write_failure(target, err.status, err.reason, err.message)
        SYNC_SECONDS.labels(spec.provider).observe(time.monotonic() - started)
        SYNCS.labels(spec.provider, result_label(plan)).inc()
        if plan.reason == keys.DENYLISTED:
            DENYLIST_REFUSALS.inc()
        state.failures = state.failures + 1 if plan.action == "fail" else 0
        state.read_at = None if plan.action == "fail" else read_at
        interval = parse_duration(spec.refresh.interval).total_seconds()
        delay = next_delay(plan, state.failures, self._rng.random(), interval=interval, jitter=spec.refresh.jitter,
                           minimum=self.min_refresh)
        if certificate is not None and plan.action != "fail":
            if requested is not None:  # honoured (a policy's is remembered in status.certificate.rotation)
                self.certificate_requests.pop((state.namespace, state.name), None)
            if plan.secret is not None:
                self._certificates[(state.namespace, target)] = digests(self.hmac_key, plan.secret.data)
            delay = max(self.min_refresh, until_renewal(certificate, times.now()))
        else:
            certificate = None
        state.next_due = self._clock() + delay
        if plan.action == "fail":
            log.warning("sync of SecretSource %s/%s failed: %s: %s (retry in %.0fs)",
                        state.namespace, state.name, plan.reason, plan.message, delay)
        elif plan.action != "none":
            log.info("SecretSource %s/%s: %s (version %s, %s)", state.namespace, state.name, plan.message,
                     plan.version or "-", plan.data_hmac)
        await self._report(state, plan, delay, notice=interval_notice(interval, self.min_refresh),
                           certificate=certificate)
        return delay

    def _hold_back(self, state: SourceState) -> float | None:
        """Seconds to wait before a sync asked for ahead of the source's own schedule (refresh-now, a
        drift restore, a spec change) may run: a few at once, then one per minimum interval, so no
        tenant can make Rotor sync (and write) in a loop. None: go ahead."""
        now = self._clock()
        if state.urgent or state.next_due is None or now >= state.next_due:
            state.urgent = False
            return None
        wait = state.bucket.take(now, rate=self.min_refresh, burst=EARLY_BURST)
        if wait <= 0:
            return None
        log.debug("SecretSource %s/%s asked for a sync early; next in %.1fs", state.namespace, state.name, wait)
        return min(wait, state.next_due - now)

    def _pinned(self, state: SourceState, spec: SecretSourceSpec) -> SecretSourceSpec:
        """SPEC reading the version a rotation pinned (ports.VersionPins), if any, instead of its own."""
        pin = self.version_pins.get((state.namespace, state.name))
        if pin is None or spec.aws is None or spec.aws.secrets_manager is None:
            return spec
        ref = spec.aws.secrets_manager.model_copy(update={"version_id": pin, "version_stage": None})
        return spec.model_copy(update={"aws": spec.aws.model_copy(update={"secrets_manager": ref})})

    async def _fetch(self, namespace: str, spec: SecretSourceSpec) -> Fetched:
        try:
            return await self.backends[spec.provider].fetch(namespace, spec)
        except BackendError:
            raise
        except Exception as exc:  # a backend bug or an odd value (a lone surrogate): its message may quote it
            raise Unavailable(f"reading the backend failed with {type(exc).__name__} (message withheld: it may "
                              "quote a value)") from None

    async def _values(self, spec: SecretSourceSpec, target: str, fetched: Fetched) -> dict[str, bytes] | SyncPlan:
        """The keys the target gets, templates rendered in the sandbox; or the failed plan."""
        try:
            selected = select_values(spec, fetched)
            check_size(selected, "the backend secret")
        except PlanError as err:
            return SyncPlan("fail", target, err.reason, err.message)
        templates = spec.target.template.data if spec.target.template is not None else {}
        if not templates:
            return selected
        try:
            return {**selected, **await self.renderer.render(templates, selected)}
        except TemplateFailure as err:
            return SyncPlan("fail", target, keys.TEMPLATE_ERROR, err.message)

    async def _existing(self, namespace: str, name: str, *, merge: bool) -> ObservedSecret | None:
        cached = self.secrets.get((namespace, name))
        # The view holds managed Secrets only: Merge must see a Secret someone else made.
        if cached is not None or (self._secrets_loaded and not merge):
            return cached
        return await self.kube.read_secret(namespace, name)

    def _denylist(self, namespace: str, spec: SecretSourceSpec) -> frozenset[str]:
        """The incidents' digests this source must refuse (scoped by namespace and backend location)."""
        backend = self.backends.get(spec.provider)
        try:
            where = backend.describe(namespace, spec) if backend is not None else None
        except BackendError:
            where = None
        return self.denylist_for(namespace, where)

    async def _apply(self, state: SourceState, plan: SyncPlan, existing: ObservedSecret | None, fetched: Fetched,
                     values: dict[str, bytes], started: float) -> SyncPlan:
        if plan.secret is None or plan.action in ("none", "fail"):
            return plan
        try:
            written = await self.kube.write_secret(state.namespace, plan.action, plan.secret, state.owner, existing)
        except KubeError as err:
            gone = err.not_found and plan.action == "update"
            if not (err.conflict or gone):
                raise
            # Our view was stale: someone else wrote, the watch lags, or (404) the Secret was deleted while
            # the watch was away (a re-list after 410 Gone brings no DELETED event). Read, plan once more.
            fresh = None if gone else await self.kube.read_secret(state.namespace, plan.target)
            self.remember(state.namespace, plan.target, fresh)
            assert state.spec is not None
            plan = plan_sync(spec=state.spec, owner=state.owner, fetched=fetched, existing=fresh,
                             hmac_key=self.hmac_key, denylist=self._denylist(state.namespace, state.spec),
                             values=values)
            if plan.secret is None or plan.action in ("none", "fail"):
                return plan
            written = await self.kube.write_secret(state.namespace, plan.action, plan.secret, state.owner, fresh)
            existing = fresh
        self.remember(state.namespace, plan.target, written)
        SECRET_WRITES.labels(plan.action).inc()
        if existing is not None and state.status.get("dataHmac") != plan.data_hmac:
            PROPAGATION_SECONDS.observe(time.monotonic() - started)  # new backend value -> Secret written
        if existing is not None and state.status.get("dataHmac") == plan.data_hmac:
            DRIFT.inc()  # the backend did not change; the Secret had been edited
        return plan

    # -- deletion -------------------------------------------------------------------------------

    async def _finalize(self, state: SourceState) -> float | None:
        """Apply deletionPolicy, then release the object: Delete removes what Rotor wrote; Retain
        leaves it and drops Rotor's owner reference. Safe to repeat after a failure or a crash."""
        try:
            if state.spec is not None:
                # The target, and a previous one if a rename was never completed.
                names = {target_name(state.spec, state.name), state.status.get("targetSecret") or ""} - {""}
                for name in sorted(names):
                    await release(self.kube, state, name, delete=state.spec.target.deletion_policy == "Delete")
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
