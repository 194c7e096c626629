"""Carry out LeakIncidents: one runbook step at a time, each persisted before and after it acts.

    observe (view) -> planning.incident.next_step -> persist status.step -> act (steps/*: the backend
    through its capability protocols, Kubernetes, the RotationPolicy, the database login check) ->
    persist the phase timestamp, a condition, a timeline entry -> Event, audit log line, metrics

Leaked values are read only to fingerprint them (keyed HMAC) and to try that login; they are held in
memory, never written anywhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from rotor.api import keys
from rotor.backends.protocols import Backend, BackendError, LoginCheck
from rotor.engines.incident.context import Context, Deps, Outcome, StepPending, peers, resolve
from rotor.engines.incident.denylists import REFRESH, STORE, Denylists
from rotor.engines.incident.journal import ACTOR, Journal
from rotor.engines.incident.steps import RUNBOOK
from rotor.engines.incident.view import IncidentState, IncidentView, Key
from rotor.engines.ports import Policies, Sources
from rotor.engines.scheduler import RefreshScheduler
from rotor.kube import Kube, KubeError
from rotor.observability.metrics import TIME_TO_CONTAIN, TIME_TO_REVOKE, TIME_TO_ROTATE
from rotor.planning import incident as plan
from rotor.planning import incident_actors as actors
from rotor.planning import times
from rotor.planning.conditions import get_condition, set_condition
from rotor.planning.incident_denylist import StoreCorrupt

log = logging.getLogger("rotor.engines.incident.worker")
IDLE_RECHECK = 60.0  # after the runbook: is the leaked value being refused?
RETRY = 5.0  # after a backend or Kubernetes error
HEADLINES = {"contain": TIME_TO_CONTAIN, "rotate": TIME_TO_ROTATE, "revoke": TIME_TO_REVOKE}


class Incidents:
    """The LeakIncident engine: its view, its own scheduler (so it wakes incidents without a
    back-reference), and the runbook."""

    def __init__(self, kube: Kube, backends: Mapping[str, Backend], sources: Sources, policies: Policies,
                 login: LoginCheck, *, state_namespace: str = "rotor-system", state_secret: str = "rotor-hmac-key",
                 operator_namespace: str | None = None, login_hosts: Mapping[str, Sequence[str]] | None = None,
                 gate: asyncio.Event | None = None, workers: int = 16) -> None:
        """STATE_NAMESPACE/STATE_SECRET: the HMAC key Secret, which also keeps the denylists; incidents in
        OPERATOR_NAMESPACE (default: STATE_NAMESPACE) denylist cluster-wide; LOGIN_HOSTS: the host:port
        allow-list of the revocation check, by Vault connection."""
        self.denylists = Denylists(kube, sources, namespace=state_namespace, secret=state_secret,
                                   operator_namespace=operator_namespace or state_namespace)
        self.view = IncidentView(kube, sources, self._wake, self.denylists)
        self.journal = Journal(kube)
        self.deps = Deps(kube, backends, sources, policies, login, self.view, self.journal, self.denylists,
                         {name: frozenset(hosts) for name, hosts in (login_hosts or {}).items()})
        self.scheduler = RefreshScheduler(self.step, workers=workers, gauges=False, gate=gate)

    def _wake(self, key: Hashable) -> None:
        self.scheduler.schedule(key, 0.0)

    # -- the view, as the handlers feed and ask it ------------------------------------------------------

    @property
    def incidents(self) -> dict[Key, IncidentState]:
        return self.view.incidents

    def upsert(self, body: Mapping[str, Any]) -> Key:
        return self.view.upsert(body)

    def observe(self, body: Mapping[str, Any]) -> None:
        self.view.observe(body)

    def forget(self, key: Key) -> None:
        self.view.forget(key)

    def for_source(self, namespace: str, source: str) -> list[Key]:
        return self.view.for_source(namespace, source)

    def for_policy(self, namespace: str, policy: str) -> list[Key]:
        return self.view.for_policy(namespace, policy)

    async def load_denylists(self, namespaces: Sequence[str]) -> int:
        loaded = await self.view.load_denylists(namespaces)
        self.scheduler.schedule(STORE, REFRESH)
        return loaded

    # -- one step ------------------------------------------------------------------------------------

    async def step(self, key: Hashable) -> float | None:
        if key == STORE:
            try:
                await self.denylists.refresh()
            except (KubeError, StoreCorrupt) as err:
                # What is enforced stays enforced; say so until the record is readable again.
                log.error("denylists not re-read (those in memory stay enforced): %s",
                          err.message if isinstance(err, KubeError) else err)
                return REFRESH / 2
            return REFRESH
        state = self.view.get(key)
        if state is None:
            return None
        journal = self.journal
        if state.spec is None:
            await journal.write(state, {"phase": "Open", "conditions": journal.ready(
                state, "False", keys.INVALID_SPEC, state.spec_error or "")})
            return None
        spec, status = state.spec, state.status
        if not (status.get("timestamps") or {}).get("detected"):
            await self._open(state)
        if status.get("phase") == "Resolved":
            return None
        if spec.resolved:
            try:
                await self._resolve(state)
            except (KubeError, StoreCorrupt) as err:
                why = err.message if isinstance(err, KubeError) else str(err)
                await journal.write(state, {"conditions": journal.ready(
                    state, "False", keys.KUBERNETES_ERROR, f"resolve: the denylist was not lifted: {why}")})
                return RETRY
            return None
        try:
            ctx = resolve(self.deps, state, spec)
        except StepPending as pending:
            await journal.write(state, {"conditions": journal.ready(state, "False", pending.reason, pending.message)})
            return pending.wait
        except BackendError as err:
            await journal.write(state, {"conditions": journal.ready(state, "False", err.reason, err.message)})
            return RETRY
        if not status.get("source") or not status.get("exposedVersion"):
            await journal.write(state, {"source": ctx.source.name, "exposedVersion": spec.version or status.get(
                "exposedVersion") or ctx.source.status.get("syncedVersion")})
        order: plan.Order | None = status.get("order")
        stamps = dict(status.get("timestamps") or {})
        step = plan.next_step(order, stamps)
        if step is None:
            return await self._aftercare(ctx)
        if step == "contain" and not status.get("step"):
            waiting = await self._blocked(ctx)
            if waiting is not None:
                return waiting
        if status.get("step") != step:
            await journal.write(state, {"step": step, "phase": plan.phase(order, stamps, False),
                                        "conditions": journal.ready(state, "False", keys.IN_PROGRESS,
                                                                    f"{step}: started")})
        try:
            outcome = await RUNBOOK[step](ctx)
        except StepPending as pending:
            await journal.write(state, {"conditions": journal.ready(state, "False", pending.reason,
                                                                    f"{step}: {pending.message}")})
            return pending.wait
        except (BackendError, KubeError, StoreCorrupt) as err:
            if isinstance(err, BackendError):
                reason, message = err.reason, err.message
            elif isinstance(err, StoreCorrupt):
                reason, message = keys.KUBERNETES_ERROR, str(err)
            else:
                reason = f"Kubernetes{err.reason}" if err.reason else keys.KUBERNETES_ERROR
                message = f"{err.status} {err.message}"
            log.warning("incident %s/%s: %s failed: %s", state.namespace, state.name, step, message)
            await journal.write(state, {"conditions": journal.ready(state, "False", reason, f"{step}: {message}")})
            return RETRY
        await self._finish(ctx, step, outcome)
        return 0.0

    async def _open(self, state: IncidentState) -> None:
        assert state.spec is not None
        spec = state.spec
        detected = times.iso(times.parse(spec.exposure.detected_at or state.created or times.now_iso()),
                             millis=True)
        reference = f": {spec.exposure.reference}" if spec.exposure.reference else ""
        message = (f"leak of {self.view.source_name(state) or '?'} in {spec.exposure.where}{reference} "
                   f"(severity {spec.severity})")
        who = actors.reporter(self.deps.sources.hmac_key, state.meta, plan.reporter(state.managed_fields))
        await self.journal.record(state, who, "Reported", message, {
            "phase": "Open", "timestamps": {"detected": detected},
            "conditions": self.journal.ready(state, "False", keys.IN_PROGRESS, "runbook starting")})
        self.view.update_gauge()

    async def _blocked(self, ctx: Context) -> float | None:
        """Incidents on one secret go one at a time, in creation order (read from the API server, so a
        freshly restarted operator that has not seen every incident yet cannot start two at once)."""
        me, found = await peers(ctx)
        earlier = plan.blocker(me, found)
        if earlier is None:
            if ctx.state.status.get("waitingFor"):
                await self.journal.write(ctx.state, {"waitingFor": None})
            return None
        message = (f"waiting for LeakIncident {earlier.name} (reported earlier, same SecretSource "
                   f"{ctx.source.name}) to finish its runbook; this one starts after it")
        await self.journal.write(ctx.state, {"phase": "Waiting", "waitingFor": earlier.name,
                                             "conditions": self.journal.ready(ctx.state, "False", keys.WAITING,
                                                                              message)})
        return RETRY

    async def _aftercare(self, ctx: Context) -> float:
        """The runbook is done; the incident stays open. Report when the sync path refuses the leaked value
        (someone wrote it back into the backend)."""
        state, journal = ctx.state, self.journal
        ready = get_condition(ctx.source.status.get("conditions"), keys.READY) or {}
        refused = ready.get("reason") == keys.DENYLISTED
        previous = get_condition(state.status.get("conditions"), keys.LEAKED_VALUE_REFUSED)
        was = bool(previous and previous.get("status") == "True")
        if refused and not was:
            message = (f"SecretSource {ctx.source.name} refused to deliver the leaked value (written back into the "
                       f"backend); Secret {ctx.target} keeps version {ctx.source.status.get('syncedVersion')}")
            conditions = journal.condition(state, keys.LEAKED_VALUE_REFUSED, "True", keys.DENYLISTED, message)
            await journal.record(state, ACTOR, keys.LEAKED_VALUE_REFUSED, message, {"conditions": conditions})
            await journal.event(state, "Warning", keys.LEAKED_VALUE_REFUSED, message)
        elif was and not refused and ready.get("status") == "True":
            await journal.write(state, {"conditions": journal.condition(
                state, keys.LEAKED_VALUE_REFUSED, "False", keys.DELIVERING, "the SecretSource delivers a value not "
                "on the denylist")})
        return IDLE_RECHECK

    async def _resolve(self, state: IncidentState) -> None:
        """Closed by a person: its denylist is lifted (from Rotor's record first), then the status says who."""
        manager, when = plan.resolver(state.managed_fields)
        who = actors.resolver(self.deps.sources.hmac_key, state.meta, manager, when)
        lifted = await self.denylists.remove(state.uid)
        if lifted and state.status.get("source"):
            self.deps.sources.sync_now(state.namespace, state.status["source"])
        at = times.iso(times.parse(when) if when else times.now(), millis=True)
        stamps = {**(state.status.get("timestamps") or {}), "resolved": at}
        unfinished = plan.next_step(state.status.get("order"), stamps)
        message = f"resolved by {who}" + (f" before the runbook finished (step {unfinished} not done)"
                                          if unfinished else "") + ("; the denylist is lifted" if lifted else "")
        await self.journal.record(state, who, "Resolved", message, {
            "phase": "Resolved", "step": None, "timestamps": stamps, "resolvedBy": who, "resolvedAt": at,
            "conditions": self.journal.ready(state, "True", keys.RESOLVED, message)})
        await self.journal.event(state, "Normal", keys.RESOLVED, message)
        self.view.update_gauge()
        if state.status.get("source"):
            self.view.wake_peers(state.namespace, state.status["source"])

    async def _finish(self, ctx: Context, step: plan.Step, outcome: Outcome) -> None:
        """The step's outcome, persisted with its phase timestamp; then its Event, audit line and metric."""
        state, journal = ctx.state, self.journal
        now = times.now()
        phase_name = plan.PHASE_OF[step]
        stamps = {**(state.status.get("timestamps") or {}), plan.STAMP_OF[step]: times.iso(now, millis=True)}
        order = outcome.patch.get("order") or state.status.get("order")
        conditions = journal.condition(state, phase_name, outcome.condition_status,
                                       outcome.condition_reason or phase_name, outcome.message)
        done = plan.next_step(order, stamps) is None
        ready = (("True", keys.PREVENTED, "runbook complete; set spec.resolved: true to close the incident") if done
                 else ("False", keys.IN_PROGRESS, f"{phase_name}: {outcome.message}"))
        conditions = set_condition(conditions, type=keys.READY, status=ready[0], reason=ready[1], message=ready[2],
                                   now=times.iso(now, millis=True), generation=state.generation)
        actor = ctx.acting if step in ("contain", "revoke") else ACTOR
        await journal.record(state, actor, phase_name, outcome.message, {
            **outcome.patch, "timestamps": stamps, "step": None, "phase": plan.phase(order, stamps, False),
            "conditions": conditions})
        await journal.event(state, "Warning" if outcome.warning else "Normal", phase_name, outcome.message)
        log.info("incident %s/%s: %s (%s)", state.namespace, state.name, phase_name, outcome.message)
        headline = HEADLINES.get(step)
        if headline is not None:
            headline.observe(max(0.0, (now - times.parse(stamps["detected"])).total_seconds()))
        if done and state.status.get("source"):
            self.view.wake_peers(state.namespace, state.status["source"])
