"""Carry out RotationPolicies: observe -> planning.rotation.decide -> one backend action -> status.

The phase is written to status before and after each external action, so a restart resumes where it
stopped. What differs between strategies (capture, publish, revoke, roll back) lives in their classes
(strategies/); the state machine and everything written to status are shared.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from rotor.api import keys
from rotor.api.kinds import ROTATION_POLICY
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import Actor, Backend, BackendError, InvalidSpec
from rotor.engines.ports import Sources, SourceView
from rotor.engines.rotation.gauges import RotationGauges
from rotor.engines.rotation.strategies import Strategy, strategy_class
from rotor.engines.rotation.view import Key, PolicyState, RotationView
from rotor.kube import Kube
from rotor.planning import times
from rotor.planning.capabilities import missing, rotation_needs
from rotor.planning.conditions import set_condition, status_unchanged
from rotor.planning.podspec import RUNTIME_USES, pod_spec, referenced_secrets, rollout_complete, workload_ready
from rotor.planning.rotation import (
    ENDED_BADLY,
    IDLE,
    Observation,
    Phase,
    RotationRecord,
    decide,
    due_at,
    record_of,
    rollout_failed_since,
    source_ready,
    start,
    transition,
    validate,
)
from rotor.planning.sync import target_name

log = logging.getLogger("rotor.engines.rotation.worker")
RETRY_SECONDS = 5.0  # a backend failure mid-rotation: try the same phase again
RECHECK_SECONDS = 60.0  # a source whose backend cannot rotate: look again (the source may change)
SOURCE_GONE_SECONDS = 30.0


def fault_point(phase: str, moment: str) -> None:
    """Crash-safety tests set ROTOR_FAULT_KILL_AT=<Phase>:<before|after> to SIGKILL the operator exactly
    there (after the phase is persisted, before or after its action). Unset in production: a no-op."""
    if os.environ.get("ROTOR_FAULT_KILL_AT") == f"{phase}:{moment}":
        log.warning("fault injection: SIGKILL at %s:%s", phase, moment)
        os.kill(os.getpid(), signal.SIGKILL)


class Rotator:
    """One step of one RotationPolicy at a time (the rotation scheduler calls step)."""

    def __init__(self, kube: Kube, backends: Mapping[str, Backend], sources: Sources, *,
                 clock: Callable[[], datetime.datetime] = times.now) -> None:
        self.kube, self.backends, self.sources, self.clock = kube, backends, sources, clock
        self.view = RotationView(clock)
        self.gauges = RotationGauges()

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
        now = self.clock()
        spec = state.spec
        problem = state.spec_error or (validate(spec) if spec is not None else "spec missing")
        if spec is None or problem:
            await self._write(state, {"conditions": self._ready(state, "False", keys.INVALID_SPEC, problem or "")})
            return None
        status = state.status
        record = record_of(status)
        source = self.sources.source(state.namespace, spec.secret_source_ref.name)
        source_spec = source.spec if source is not None else None
        kind = strategy_class(spec)
        active = status.get("active") or {}
        due = due_at(spec, status, state.created, kind.due(spec, active, now))
        self.gauges.seen((state.namespace, state.name), spec, record.phase, due, now, active,
                         holds_leases=kind.holds_leases)
        unsupported = self._unsupported(spec, source_spec)
        if unsupported:
            await self._write(state, {"conditions": self._ready(state, "False", keys.INVALID_SPEC, unsupported)})
            return RECHECK_SECONDS
        seen = await self._observe(state, record, source, now)
        decision = decide(spec, record, seen, due_at=due)
        if decision.action == "invalid":
            await self._write(state, {"conditions": self._ready(state, "False", keys.SOURCE_NOT_FOUND,
                                                                decision.message)})
            return decision.wait
        if decision.action == "none" and decision.next is None:
            await self._idle(state, record, due, decision.message)
            return decision.wait
        if source_spec is None and decision.action != "none":  # deleted mid-rotation: wait for it to return
            gone = f"{record.phase}: SecretSource {spec.secret_source_ref.name} does not exist (any more)"
            await self._write(state, {"conditions": self._ready(state, "False", keys.SOURCE_NOT_FOUND, gone)})
            return SOURCE_GONE_SECONDS
        fault_point(str(record.phase), "before")
        rotation = dict(status.get("rotation") or {})
        try:
            rotation = await self._act(state, spec, source_spec, decision.action, rotation, now, seen)
        except BackendError as err:
            # Backend down or denying mid-rotation: stay in this phase and retry; never skip ahead.
            log.warning("rotation %s/%s: %s failed in phase %s: %s", state.namespace, state.name, decision.action,
                        record.phase, err.message)
            await self._write(state, {"conditions": self._ready(state, "False", err.reason,
                                                                f"{record.phase or 'start'}: {err.message}")})
            return RETRY_SECONDS
        fault_point(str(record.phase), "after")
        if decision.next is not None:
            await self._transition(state, spec, decision.next, decision.message, now, rotation)
        return decision.wait

    def _unsupported(self, spec: RotationPolicySpec, source: SecretSourceSpec | None) -> str | None:
        """Why the source's backend cannot carry out SPEC (naming the field), or None."""
        if source is None:
            return None  # decide reports a missing source when a rotation is due
        backend = self.backends.get(source.provider)
        has = backend.capabilities if backend is not None else frozenset()
        return missing(rotation_needs(spec), source.provider, has, ROTATION_POLICY.kind)

    async def _observe(self, state: PolicyState, record: RotationRecord, source: SourceView | None,
                       now: datetime.datetime) -> Observation:
        status = state.status
        rollout_done, rollout_failed = True, False
        if record.phase == "Verifying" and source is not None and source.spec is not None:
            rollout_done, rollout_failed = await self._rollout(
                state.namespace, target_name(source.spec, source.name), record.started_at or now)
        manual = bool(state.rotate_now) and state.rotate_now != status.get("handledRotateNow")
        return Observation(now=now, source_exists=source is not None and source.spec is not None,
                           source_ready=source is not None and source_ready(source.status),
                           synced_version=source.status.get("syncedVersion") if source is not None else None,
                           rollout_done=rollout_done, rollout_failed=rollout_failed, manual=manual)

    async def _rollout(self, namespace: str, secret: str, since: datetime.datetime) -> tuple[bool, bool]:
        """Whether every workload reading SECRET rolled out and is Ready; whether one's rollout failed
        since SINCE (the rotation's start)."""
        done, failed = True, False
        for kind, body in await self.kube.list_workloads(namespace):
            if secret not in referenced_secrets(pod_spec(kind, body), RUNTIME_USES):
                continue
            done = done and rollout_complete(kind, body) and workload_ready(kind, body)
            failed = failed or rollout_failed_since(kind, body, since)
        return done, failed

    async def _idle(self, state: PolicyState, record: RotationRecord, due: datetime.datetime, message: str) -> None:
        """Nothing to do now: keep nextRotationTime (and, unless the last one failed, Ready=Idle) current."""
        if record.phase not in IDLE or state.status.get("nextRotationTime") == times.iso(due):
            return
        patch: dict[str, Any] = {"nextRotationTime": times.iso(due)}
        if record.phase not in ENDED_BADLY:  # keep saying why it failed
            patch["conditions"] = self._ready(state, "True", keys.IDLE, message or f"next rotation {times.iso(due)}")
        await self._write(state, patch)

    # -- actions --------------------------------------------------------------------------------------

    async def _act(self, state: PolicyState, spec: RotationPolicySpec, source: SecretSourceSpec | None, action: str,
                   rotation: dict[str, Any], now: datetime.datetime, seen: Observation) -> dict[str, Any]:
        """Run ACTION; status.rotation as it stands after it."""
        if action == "start":
            old = await self._strategy(state, spec, source).capture(state.status.get("active") or {})
            rotation = start(old, now, manual=seen.manual, rotation_id=uuid.uuid4().hex[:12])
            if seen.manual:
                state.status["handledRotateNow"] = state.rotate_now
        elif action == "publish":
            if spec.dry_run:
                rotation["new"] = {"version": "dry-run"}
            else:
                rotation["new"] = await self._strategy(state, spec, source).publish(rotation["old"])
            self._sync_now(state, spec)
        elif action == "sync":
            self._sync_now(state, spec)
        elif action == "revoke":
            if not spec.dry_run:
                await self._strategy(state, spec, source).revoke(
                    rotation["old"], rotation["new"], times.parse_optional(rotation.get("phaseSince")))
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
        return strategy_class(spec)(spec, backend.bind(state.namespace, source, actor), self.clock)

    def _sync_now(self, state: PolicyState, spec: RotationPolicySpec) -> None:
        self.sources.sync_now(state.namespace, spec.secret_source_ref.name)

    async def _transition(self, state: PolicyState, spec: RotationPolicySpec, phase: Phase, message: str,
                          now: datetime.datetime, rotation: dict[str, Any]) -> None:
        previous = state.status.get("phase")
        change = transition(spec, state.status, rotation, phase, message, now, state.created)
        self.gauges.moved((state.namespace, state.name), spec.strategy, previous, phase, now, change)
        patch = {**change.patch, "conditions": self._ready(state, "True" if change.ok else "False", change.reason,
                                                           change.message)}
        await self._write(state, patch)
        log.info("rotation %s/%s: %s -> %s (%s)", state.namespace, state.name, previous, phase, change.message)
        if change.event:
            await self.kube.post_event(kind=ROTATION_POLICY.kind, namespace=state.namespace, name=state.name,
                                       uid=state.uid, type="Normal" if change.ok else "Warning",
                                       reason=change.reason, message=change.message)

    def _ready(self, state: PolicyState, status: str, reason: str, message: str) -> list[dict[str, Any]]:
        return set_condition(state.status.get("conditions") or [], type=keys.READY, status=status, reason=reason,
                             message=message, now=times.iso(self.clock()), generation=state.generation)

    async def _write(self, state: PolicyState, patch: dict[str, Any]) -> None:
        patch = {"observedGeneration": state.generation, **patch}
        if not status_unchanged(state.status, patch) and await self.kube.patch_status(
                ROTATION_POLICY.plural, state.namespace, state.name, patch, missing_ok=True):
            state.status.update(patch)
