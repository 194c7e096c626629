"""Carry out RotationPolicies: observe -> planning.rotation.decide -> one backend action -> status.

The phase is written to status before and after each external action, so a restart resumes where it
stopped. Every write is guarded by the resourceVersion read (fence.py): a rotation in progress is
carried on by one replica, and a replica whose write lost re-reads instead of acting twice. What
differs between strategies (capture, publish, revoke, roll back) lives in their classes (strategies/);
dynamic leases are renewed and released by keeper.py; the state machine and everything written to
status are shared.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from rotor.api import keys
from rotor.api.kinds import ROTATION_POLICY
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import Actor, Backend, BackendError, InvalidSpec
from rotor.engines.ports import Sources, SourceView
from rotor.engines.rotation.faults import fault_point
from rotor.engines.rotation.fence import Moved, StatusFence
from rotor.engines.rotation.gauges import RotationGauges
from rotor.engines.rotation.keeper import LeaseKeeper
from rotor.engines.rotation.strategies import Dynamic, KvStrategy, Strategy, strategy_class
from rotor.engines.rotation.view import Key, PolicyState, RotationView
from rotor.kube import Kube, KubeError
from rotor.planning import times
from rotor.planning.capabilities import missing, rotation_needs
from rotor.planning.certificates import certificate_source_problem
from rotor.planning.leases import NEVER, held_leases
from rotor.planning.podspec import (
    RUNTIME_USES,
    pod_spec,
    referenced_secrets,
    rollout_complete,
    rollout_failed,
    workload_ready,
)
from rotor.planning.rotation import (
    ENDED_BADLY,
    IDLE,
    TAKEOVER,
    Observation,
    Phase,
    RotationRecord,
    decide,
    due_at,
    failure_since,
    record_of,
    source_ready,
    start,
    transition,
    validate,
)
from rotor.planning.sync import target_name

FOLLOWED = ("Propagating", "Verifying", "Overlapping")  # phases whose readers a strategy may steer
log = logging.getLogger("rotor.engines.rotation.worker")
RETRY_SECONDS = 5.0  # a backend failure mid-rotation: try the same phase again
RECHECK_SECONDS = 60.0  # a source whose backend cannot rotate: look again (the source may change)
SOURCE_GONE_SECONDS = 30.0
# A policy being deleted whose SecretSource is not (yet) known: how long to wait for it before letting
# the policy go without revoking its leases (they end at their TTL: nobody renews them).
SOURCE_AWAITED = datetime.timedelta(minutes=1)
AGAIN = 0.0  # another writer moved the policy on: step again at once, on what it wrote
NO_RENEWAL = 3600.0


class Rotator:
    """One step of one RotationPolicy at a time (the rotation scheduler calls step)."""

    def __init__(self, kube: Kube, backends: Mapping[str, Backend], sources: Sources, *,
                 clock: Callable[[], datetime.datetime] = times.now,
                 takeover: datetime.timedelta = TAKEOVER) -> None:
        self.kube, self.backends, self.sources, self.clock = kube, backends, sources, clock
        self.view = RotationView(clock)
        self.gauges = RotationGauges()
        self.fence = StatusFence(kube, self.view, clock, takeover)
        self.keeper = LeaseKeeper(self.fence, clock)

    # -- the view, as the handlers feed it and other engines read it (rotor.engines.ports.Policies) --

    @property
    def policies(self) -> dict[Key, PolicyState]:
        return self.view.policies

    def upsert(self, body: Mapping[str, Any]) -> Key:
        return self.view.upsert(body)

    def observe(self, body: Mapping[str, Any]) -> bool:
        return self.view.observe(body)

    def forget(self, key: Key) -> None:
        self.view.forget(key)
        self.gauges.forget(key)
        self.fence.forget(key)
        self.keeper.forget(key)

    def policy(self, namespace: str, name: str) -> PolicyState | None:
        return self.view.policy(namespace, name)

    def policies_in(self, namespace: str) -> Sequence[PolicyState]:
        return self.view.policies_in(namespace)

    # -- one step -------------------------------------------------------------------------------------

    async def step(self, key: Hashable) -> float | None:
        """Do what the policy's phase calls for now; seconds until the next step (None: until it changes)."""
        state = self.view.get(key)
        if state is None:
            return None
        self.fence.begin(state)
        try:
            return await self._step(state)
        except Moved:  # another writer moved the policy on; it was read again: decide anew on that
            return AGAIN
        except KubeError as err:  # the API server failed (restarting, overloaded): the same step again soon
            log.warning("rotation %s/%s: the API server failed (HTTP %s %s); trying again in %.0fs", state.namespace,
                        state.name, err.status, err.reason, RETRY_SECONDS)
            return RETRY_SECONDS

    async def _step(self, state: PolicyState) -> float | None:
        if state.deleting:
            return await self._release(state)
        now = self.clock()
        spec = state.spec
        problem = state.spec_error or (validate(spec) if spec is not None else "spec missing")
        if spec is None or problem:
            await self.fence.write(state, {"conditions": self._ready(state, "False", keys.INVALID_SPEC, problem or "")})
            return None
        source = self.sources.source(state.namespace, spec.secret_source_ref.name)
        source_spec = source.spec if source is not None else None
        unsupported = self._unsupported(spec, source_spec)
        if unsupported:
            await self.fence.write(state, {"conditions": self._ready(state, "False", keys.INVALID_SPEC, unsupported)})
            return RECHECK_SECONDS
        kind = strategy_class(spec)
        offset, renew_wait = datetime.timedelta(0), NO_RENEWAL
        if kind.holds_leases and source_spec is not None:
            try:
                offset, renew_wait = await self._keep_leases(state, spec, source_spec)
            except BackendError as err:
                log.warning("rotation %s/%s: keeping its leases failed: %s", state.namespace, state.name, err.message)
                offset, renew_wait = self.keeper.known_offset((state.namespace, state.name)), RETRY_SECONDS
        return min(renew_wait, await self._rotate(state, spec, source, kind, now, offset))

    async def _rotate(self, state: PolicyState, spec: RotationPolicySpec, source: SourceView | None,
                      kind: type[KvStrategy], now: datetime.datetime, offset: datetime.timedelta) -> float:
        """The state machine's step (OFFSET: the backend's clock minus Rotor's, for lease times)."""
        status = state.status
        record = record_of(status)
        source_spec = source.spec if source is not None else None
        active = status.get("active") or {}
        backend_now = now + offset
        observed = kind.observed(source.status) if source is not None else {}  # strategy certificate: renewAt
        strategy_due = kind.due(spec, {**active, **observed}, backend_now)  # the backend's clock; due_at: Rotor's
        due = due_at(spec, status, state.created,
                     strategy_due - offset if strategy_due is not None and strategy_due < NEVER else None)
        self.gauges.seen((state.namespace, state.name), spec, record.phase, due, now, active,
                         holds_leases=kind.holds_leases, backend_now=backend_now)
        whose, wait = self.fence.turn(state, now)
        if whose == "wait":
            return wait
        if whose == "claim" and not await self.fence.claim(state, now):
            return RECHECK_SECONDS  # the policy is gone
        status, record, requested = state.status, record_of(state.status), state.rotate_now
        seen = await self._observe(state, record, source, now)
        if record.phase in FOLLOWED and source_spec is not None and not spec.dry_run:
            try:  # on a store with staging labels: readers move to the new version first (strategies.staged)
                strategy = self._strategy(state, spec, source_spec)
                if isinstance(strategy, KvStrategy):
                    await strategy.follow(str(record.phase), record.new)
            except BackendError as err:
                await self.fence.write(state, {"conditions": self._ready(state, "False", err.reason,
                                                                         f"{record.phase}: {err.message}")})
                return RETRY_SECONDS
        decision = decide(spec, record, seen, due_at=due)
        if decision.action == "invalid":
            await self.fence.write(state, {"conditions": self._ready(state, "False", keys.SOURCE_NOT_FOUND,
                                                                     decision.message)})
            return decision.wait
        if decision.action == "none" and decision.next is None:
            await self._idle(state, record, due, decision.message)
            return decision.wait
        if source_spec is None and decision.action != "none":  # deleted mid-rotation: wait for it to return
            gone = f"{record.phase}: SecretSource {spec.secret_source_ref.name} does not exist (any more)"
            await self.fence.write(state, {"conditions": self._ready(state, "False", keys.SOURCE_NOT_FOUND, gone)})
            return SOURCE_GONE_SECONDS
        fault_point(str(record.phase), "before")
        rotation = dict(status.get("rotation") or {})
        try:
            rotation = await self._act(state, spec, source_spec, decision.action, rotation, now, seen)
            handled = requested if decision.action == "start" and seen.manual else None
        except BackendError as err:
            # Backend down or denying mid-rotation: stay in this phase and retry; never skip ahead.
            log.warning("rotation %s/%s: %s failed in phase %s: %s", state.namespace, state.name, decision.action,
                        record.phase, err.message)
            await self.fence.write(state, {"conditions": self._ready(state, "False", err.reason,
                                                                     f"{record.phase or 'start'}: {err.message}")})
            return RETRY_SECONDS
        fault_point(str(record.phase), "after")
        if decision.next is not None:
            await self._transition(state, spec, decision.next, decision.message, now, rotation, handled)
        return decision.wait

    async def _keep_leases(self, state: PolicyState, spec: RotationPolicySpec,
                           source: SecretSourceSpec) -> tuple[datetime.timedelta, float]:
        """Finalizer on, held leases renewed: (backend clock offset, seconds until the next renewal)."""
        strategy = self._strategy(state, spec, source)
        assert isinstance(strategy, Dynamic)
        if not spec.dry_run or held_leases(state.status):
            await self.keeper.hold(state)
        offset = await self.keeper.offset((state.namespace, state.name), strategy)
        return offset, await self.keeper.renew(state, spec, strategy, self.clock() + offset)

    async def _release(self, state: PolicyState) -> float | None:
        """The policy is being deleted: its leases are revoked before it goes."""
        spec = state.spec
        if spec is None or strategy_class(spec) is not Dynamic:
            await self.keeper.release(state, None)
            return None
        source = self.sources.source(state.namespace, spec.secret_source_ref.name)
        if source is None or source.spec is None:
            waited = self.clock() - (state.deleting_since or self.clock())
            if waited < SOURCE_AWAITED:  # at start-up, SecretSources may not all be seen yet
                return RETRY_SECONDS
            await self.keeper.release(state, None)
            return None
        try:
            strategy = self._strategy(state, spec, source.spec)
            await self.keeper.release(state, strategy if isinstance(strategy, Dynamic) else None)
        except BackendError as err:
            log.warning("rotation %s/%s: revoking its leases failed: %s", state.namespace, state.name, err.message)
            return RETRY_SECONDS
        return None

    def _unsupported(self, spec: RotationPolicySpec, source: SecretSourceSpec | None) -> str | None:
        """Why the source's backend cannot carry out SPEC (naming the field), or None."""
        if source is None:
            return None  # decide reports a missing source when a rotation is due
        backend = self.backends.get(source.provider)
        has = backend.capabilities if backend is not None else frozenset()
        return (missing(rotation_needs(spec), source.provider, has, ROTATION_POLICY.kind)
                or certificate_source_problem(spec, spec.secret_source_ref.name, source))

    async def _observe(self, state: PolicyState, record: RotationRecord, source: SourceView | None,
                       now: datetime.datetime) -> Observation:
        status = state.status
        rollout_done, failed = True, False
        if record.phase == "Verifying" and source is not None and source.spec is not None:
            since = failure_since(record.started_at or now, self.fence.kube_offset)
            rollout_done, failed = await rollout(self.kube, state.namespace, target_name(source.spec, source.name),
                                                 since)
        manual = bool(state.rotate_now) and state.rotate_now != status.get("handledRotateNow")
        return Observation(now=now, source_exists=source is not None and source.spec is not None,
                           source_ready=source is not None and source_ready(source.status),
                           synced_version=source.status.get("syncedVersion") if source is not None else None,
                           rollout_done=rollout_done, rollout_failed=failed, manual=manual)

    async def _idle(self, state: PolicyState, record: RotationRecord, due: datetime.datetime, message: str) -> None:
        """Nothing to do now: keep nextRotationTime (and, unless the last one failed, Ready=Idle) current."""
        if record.phase not in IDLE or state.status.get("nextRotationTime") == times.iso(due):
            return
        patch: dict[str, Any] = {"nextRotationTime": times.iso(due)}
        if record.phase not in ENDED_BADLY:  # keep saying why it failed
            patch["conditions"] = self._ready(state, "True", keys.IDLE, message or f"next rotation {times.iso(due)}")
        await self.fence.write(state, patch)

    # -- actions --------------------------------------------------------------------------------------

    async def _act(self, state: PolicyState, spec: RotationPolicySpec, source: SecretSourceSpec | None, action: str,
                   rotation: dict[str, Any], now: datetime.datetime, seen: Observation) -> dict[str, Any]:
        """Run ACTION; status.rotation as it stands after it."""
        if action == "start":
            old = await self._strategy(state, spec, source).capture(state.status.get("active") or {})
            rotation = start(old, now, manual=seen.manual, rotation_id=uuid.uuid4().hex[:12])
        elif action == "publish":
            if spec.dry_run:
                rotation["new"] = {"version": "dry-run"}
            else:
                rotation["new"] = await self._strategy(state, spec, source).publish(rotation["old"],
                                                                                    str(rotation.get("id") or ""))
            self._sync_now(state, spec)
        elif action == "sync":
            self._sync_now(state, spec)
        elif action == "revoke":
            if not spec.dry_run:
                await self._strategy(state, spec, source).revoke(
                    rotation["old"], rotation["new"], times.parse_optional(rotation.get("phaseSince")))
                self._sync_now(state, spec)  # a revoke may write the secret too (an exported Transit key)
        elif action == "rollback" and not spec.dry_run and rotation.get("new"):
            await self._strategy(state, spec, source).rollback(rotation["old"], rotation["new"])
            self._sync_now(state, spec)
        return rotation

    def _strategy(self, state: PolicyState, spec: RotationPolicySpec, source: SecretSourceSpec | None) -> Strategy:
        """SPEC's strategy on the source's secret, acting as spec.identity (default: the source's own)."""
        assert source is not None  # step() acts only with a source
        backend = self.backends.get(source.provider)
        if backend is None:
            raise InvalidSpec(f"the SecretSource's provider {source.provider!r} has no backend in this operator")
        actor = Actor(spec.identity.service_account_name, spec.identity.role) if spec.identity else Actor()
        strategy = strategy_class(spec)(spec, backend.bind(state.namespace, source, actor), self.clock)
        if isinstance(strategy, KvStrategy):  # e.g. Certificates: the SecretSource engine issues, when asked
            strategy.attach(self.sources, state.namespace, spec.secret_source_ref.name)
        return strategy

    def _sync_now(self, state: PolicyState, spec: RotationPolicySpec) -> None:
        self.sources.sync_now(state.namespace, spec.secret_source_ref.name)

    async def _transition(self, state: PolicyState, spec: RotationPolicySpec, phase: Phase, message: str,
                          now: datetime.datetime, rotation: dict[str, Any], handled: str | None = None) -> None:
        """Enter PHASE (Moved when another writer moved the policy on first: nothing entered); HANDLED:
        the rotate-now request this rotation answers."""
        previous = state.status.get("phase")
        status = {**state.status, "handledRotateNow": handled} if handled is not None else state.status
        change = transition(spec, status, rotation, phase, message, now, state.created)
        patch = {**change.patch, "conditions": self._ready(state, "True" if change.ok else "False", change.reason,
                                                           change.message)}
        if not await self.fence.write(state, patch):
            return  # the policy is gone
        self.gauges.moved((state.namespace, state.name), spec.strategy, previous, phase, now, change)
        log.info("rotation %s/%s: %s -> %s (%s)", state.namespace, state.name, previous, phase, change.message)
        if change.event:
            await self.kube.post_event(kind=ROTATION_POLICY.kind, namespace=state.namespace, name=state.name,
                                       uid=state.uid, type="Normal" if change.ok else "Warning",
                                       reason=change.reason, message=change.message)

    def _ready(self, state: PolicyState, status: str, reason: str, message: str) -> list[dict[str, Any]]:
        return self.fence.ready(state, status, reason, message)


async def rollout(kube: Kube, namespace: str, secret: str, since: datetime.datetime) -> tuple[bool, bool]:
    """Whether every workload reading SECRET rolled out and is Ready; whether one's rollout failed
    since SINCE (the rotation's start, on the API server's clock)."""
    done, failed = True, False
    for kind, body in await kube.list_workloads(namespace):
        if secret not in referenced_secrets(pod_spec(kind, body), RUNTIME_USES):
            continue
        done = done and rollout_complete(kind, body) and workload_ready(kind, body)
        failed = failed or rollout_failed(kind, body, since) is not None
    return done, failed
