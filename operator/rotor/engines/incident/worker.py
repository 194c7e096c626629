"""Carry out LeakIncidents: one runbook step at a time, each persisted before and after it acts.

    observe -> planning.incident.next_step -> persist status.step -> act (Vault, Kubernetes, the
    RotationPolicy, PostgreSQL) -> persist the phase timestamp, a condition, a timeline entry -> Event,
    audit log line (logger rotor.audit), metrics

Rotation goes through the secret's RotationPolicy (or an emergency one the incident creates), so
readers move with the same overlap and verification as any rotation. Revocation is done here when it
must come first (order immediate) and is confirmed afterwards where it can be (a database login with
the leaked credential must fail). Leaked values are read only to fingerprint them (keyed HMAC) and to
try that login; they are held in memory, never written anywhere.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rotor import GROUP, VERSION
from rotor.api.common import parse_duration
from rotor.api.keys import ROTATE_NOW
from rotor.api.leakincident import LeakIncidentSpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import BackendError, NotFound
from rotor.backends.vault import Identity, VaultBackend
from rotor.config import VaultConnection
from rotor.engines.rotation.worker import LEASE_META, PolicyState, Rotator, fingerprint
from rotor.engines.scheduler import RefreshScheduler
from rotor.engines.secretsource.worker import SecretSync, SourceState
from rotor.kube import Kube, KubeError
from rotor.observability.metrics import INCIDENTS_OPEN, TIME_TO_CONTAIN, TIME_TO_REVOKE, TIME_TO_ROTATE
from rotor.observability.secrecy import remember
from rotor.planning import incident as plan
from rotor.planning.conditions import get_condition, set_condition, status_unchanged
from rotor.planning.hashing import value_hmac
from rotor.planning.sync import target_name
from rotor.planning.vault_audit import audit_paths, audit_reads

log = logging.getLogger("rotor.engines.incident.worker")
audit = logging.getLogger("rotor.audit")
PLURAL = "leakincidents"
ACTOR = "rotor"
EMERGENCY_SUFFIX = "-emergency"
POLL = 1.0  # while a rotation the incident waits for is running
IDLE_RECHECK = 60.0  # after the runbook: is the leaked value being refused?

Key = tuple[str, str]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class IncidentState:
    namespace: str
    name: str
    uid: str
    generation: int
    created: str
    spec: LeakIncidentSpec | None
    spec_error: str | None
    status: dict[str, Any] = field(default_factory=dict)
    managed_fields: list[dict[str, Any]] = field(default_factory=list)


class StepPending(Exception):
    """The step cannot finish yet: say why in its condition and come back in WAIT seconds."""

    def __init__(self, message: str, wait: float = POLL, reason: str = "InProgress") -> None:
        super().__init__(message)
        self.message, self.wait, self.reason = message, wait, reason


@dataclass
class Outcome:
    """A finished step: the status it adds, what the timeline, Event and audit log say."""

    message: str
    patch: dict[str, Any] = field(default_factory=dict)
    condition_status: str = "True"
    condition_reason: str = ""
    warning: bool = False


@dataclass
class Context:
    """What a step needs, looked up fresh each time (in-memory views of the other engines)."""

    state: IncidentState
    spec: LeakIncidentSpec
    source: SourceState
    source_spec: SecretSourceSpec
    policy: PolicyState | None
    identity: Identity
    credential: plan.Credential

    @property
    def key(self) -> Key:
        return (self.state.namespace, self.state.name)

    @property
    def target(self) -> str:
        return target_name(self.source_spec, self.source.name)

    @property
    def mount_path(self) -> tuple[str, str]:
        assert self.source_spec.vault is not None
        return self.source_spec.vault.mount, self.source_spec.vault.path


class Incidents:
    def __init__(self, kube: Kube, vault: VaultBackend, engine: SecretSync, sync_scheduler: RefreshScheduler,
                 rotator: Rotator, connections: Mapping[str, VaultConnection]) -> None:
        self.kube, self.vault, self.engine = kube, vault, engine
        self.sync_scheduler, self.rotator, self.connections = sync_scheduler, rotator, connections
        self.incidents: dict[Key, IncidentState] = {}
        self.scheduler: RefreshScheduler | None = None  # set by the operator start-up; wakes peers
        # The leaked database login, for the one check that it no longer works. Memory only: after a
        # restart it is re-read from the backend if still there, else the check says it could not run.
        self._logins: dict[Key, dict[str, str]] = {}

    # -- in-memory view, fed by the handlers -------------------------------------------------------

    def upsert(self, body: Mapping[str, Any]) -> Key:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        try:
            spec, error = LeakIncidentSpec.model_validate(dict(body.get("spec") or {})), None
        except ValidationError as exc:
            spec, error = None, "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                          for e in exc.errors(include_input=False))
        previous = self.incidents.get(key)
        # Rotor is the only writer of an incident's status, and its in-memory copy is never older than
        # a watch event's (which may lag behind its own writes): keep it for a known incident.
        status = previous.status if previous is not None and previous.uid == meta["uid"] else dict(
            body.get("status") or {})
        state = IncidentState(meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation") or 0),
                              str(meta.get("creationTimestamp") or ""), spec, error, status,
                              list(meta.get("managedFields") or []))
        self.incidents[key] = state
        self._install_denylist(state)
        self._update_gauge()
        return key

    def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event: who changed what (managedFields). Status is not taken from events (see upsert)."""
        meta = body["metadata"]
        state = self.incidents.get((meta["namespace"], meta["name"]))
        if state is not None and state.uid == meta.get("uid"):
            state.managed_fields = list(meta.get("managedFields") or [])

    def forget(self, key: Key) -> None:
        """The incident was deleted: its denylist goes with it."""
        state = self.incidents.pop(key, None)
        self._logins.pop(key, None)
        self.engine.set_denylist(("incident", *key), frozenset())
        if state is not None and state.status.get("source"):
            self.sync_scheduler.schedule((key[0], state.status["source"]), 0.0)
            self._wake_peers(key[0], state.status["source"])
        self._update_gauge()

    def for_source(self, namespace: str, source: str) -> list[Key]:
        """Incidents about this SecretSource (to re-check them when it changes)."""
        return [k for k, s in self.incidents.items() if k[0] == namespace and self._source_name(s) == source]

    def for_policy(self, namespace: str, policy: str) -> list[Key]:
        return [k for k, s in self.incidents.items() if k[0] == namespace
                and (s.status.get("rotation") or {}).get("policy") == policy and not s.status.get("timestamps", {})
                .get("prevented")]

    async def load_denylists(self, namespaces: Sequence[str]) -> int:
        """At start-up, before any sync: every LeakIncident's denylist (in NAMESPACES, all if empty).

        Kopf re-reads the incidents and the SecretSources in parallel after a restart; a source synced
        before its incident would deliver the leaked value again. Open or resolved, an incident's
        denylist holds until it is deleted (as in upsert); the incident itself is left to Kopf, and
        its deletion removes the same denylist (forget). Returns how many incidents had one."""
        listed: list[dict[str, Any]] = []
        scopes: list[str | None] = [*namespaces] or [None]
        for namespace in scopes:
            listed.extend(await self.kube.list_objects(GROUP, VERSION, PLURAL, namespace))
        loaded, count = 0, 0
        for body in listed:
            digests = frozenset((body.get("status") or {}).get("denylist") or ())
            if digests:
                meta = body["metadata"]
                self.engine.set_denylist(("incident", meta["namespace"], meta["name"]), digests)
                loaded, count = loaded + 1, count + len(digests)
        log.info("denylists of %d LeakIncident(s) loaded (%d digest(s)) before the first sync", loaded, count)
        return loaded

    def _install_denylist(self, state: IncidentState) -> None:
        digests = frozenset(state.status.get("denylist") or ())
        if digests:
            self.engine.set_denylist(("incident", state.namespace, state.name), digests)

    def _update_gauge(self) -> None:
        counts = {severity: 0 for severity in ("low", "medium", "high", "critical")}
        for state in self.incidents.values():
            if state.spec is not None and state.status.get("phase") != "Resolved":
                counts[state.spec.severity] += 1
        for severity, count in counts.items():
            INCIDENTS_OPEN.labels(severity).set(count)

    def _wake_peers(self, namespace: str, source: str) -> None:
        if self.scheduler is not None:
            for key in self.for_source(namespace, source):
                self.scheduler.schedule(key, 0.0)

    # -- one step ------------------------------------------------------------------------------------

    async def step(self, key: Hashable) -> float | None:
        state = self.incidents.get(key) if isinstance(key, tuple) else None
        if state is None:
            return None
        if state.spec is None:
            await self._write(state, {"phase": "Open", "conditions": self._ready(state, "False", "InvalidSpec",
                                                                                state.spec_error or "")})
            return None
        spec = state.spec
        status = state.status
        stamps = dict(status.get("timestamps") or {})
        if not stamps.get("detected"):
            await self._open(state, spec)
            stamps = dict(status.get("timestamps") or {})
        if status.get("phase") == "Resolved":
            return None
        if spec.resolved:
            await self._resolve(state)
            return None
        try:
            ctx = self._context(state, spec)
        except StepPending as pending:
            await self._write(state, {"conditions": self._ready(state, "False", pending.reason, pending.message)})
            return pending.wait
        if not status.get("source") or not status.get("exposedVersion"):
            await self._write(state, {"source": ctx.source.name, "exposedVersion": spec.version or status.get(
                "exposedVersion") or ctx.source.status.get("syncedVersion")})
        order: plan.Order | None = status.get("order")
        step = plan.next_step(order, stamps)
        if step is None:
            return await self._aftercare(ctx)
        if step == "contain" and not status.get("step"):
            waiting = await self._blocked(ctx)
            if waiting is not None:
                return waiting
        if status.get("step") != step:
            await self._write(state, {"step": step, "phase": plan.phase(order, stamps, False),
                                      "conditions": self._ready(state, "False", "InProgress", f"{step}: started")})
        try:
            outcome = await getattr(self, f"_{step}")(ctx)
        except StepPending as pending:
            await self._write(state, {"conditions": self._ready(state, "False", pending.reason,
                                                                f"{step}: {pending.message}")})
            return pending.wait
        except (BackendError, KubeError) as err:
            reason = err.reason if isinstance(err, BackendError) else f"Kubernetes{err.reason or 'Error'}"
            message = err.message if isinstance(err, BackendError) else f"{err.status} {err.message}"
            log.warning("incident %s/%s: %s failed: %s", state.namespace, state.name, step, message)
            await self._write(state, {"conditions": self._ready(state, "False", reason, f"{step}: {message}")})
            return 5.0
        await self._finish(ctx, step, outcome)
        return 0.0

    async def _open(self, state: IncidentState, spec: LeakIncidentSpec) -> None:
        detected = spec.exposure.detected_at or state.created or plan.iso(_now())
        detected = plan.iso(plan.parse_time(detected))
        who = plan.reporter(state.managed_fields)
        entry, timeline = self._timeline(state, who, "Reported", f"leak of {self._source_name(state) or '?'} in "
                                         f"{spec.exposure.where}"
                                         f"{': ' + spec.exposure.reference if spec.exposure.reference else ''} "
                                         f"(severity {spec.severity})")
        await self._write(state, {"phase": "Open", "timestamps": {"detected": detected}, "timeline": timeline,
                                  "conditions": self._ready(state, "False", "InProgress", "runbook starting")})
        self._audit_line(state, entry)
        self._update_gauge()

    def _context(self, state: IncidentState, spec: LeakIncidentSpec) -> Context:
        name = self._source_name(state)
        source = self.engine.sources.get((state.namespace, name)) if name else None
        if source is None or source.spec is None:
            what = (f"SecretSource {spec.secret_source_ref.name}" if spec.secret_source_ref else
                    f"no SecretSource delivers Secret {spec.target_secret_ref.name if spec.target_secret_ref else '?'}")
            raise StepPending(f"{what} not found in namespace {state.namespace}: create it or fix "
                              "spec.secretSourceRef / spec.targetSecretRef", 15.0, "SourceNotFound")
        if source.spec.provider != "vault" or source.spec.vault is None:
            raise StepPending(f"SecretSource {source.name} uses provider {source.spec.provider}: incidents can "
                              "contain, rotate and revoke Vault/OpenBao secrets only", 300.0, "Unsupported")
        policy = self._policy(state, source.name)
        spec_policy = policy.spec if policy is not None else None
        if spec_policy is not None and spec_policy.identity is not None:
            account, role = spec_policy.identity.service_account_name, spec_policy.identity.role
        elif spec.response.identity is not None:
            account, role = spec.response.identity.service_account_name, spec.response.identity.role
        else:
            account, role = source.spec.service_account_name, source.spec.vault.role
        vault = source.spec.vault
        identity = Identity(vault.connection, state.namespace, account, role, vault.auth_mount, vault.audience)
        credential = plan.credential_kind(
            spec_policy.strategy if spec_policy else None,
            spec_policy.overlap.static_roles if spec_policy else (),
            spec_policy.generator.key if spec_policy else None)
        return Context(state, spec, source, source.spec, policy, identity, credential)

    def _source_name(self, state: IncidentState) -> str | None:
        if state.status.get("source"):
            return str(state.status["source"])
        if state.spec is None:
            return None
        if state.spec.secret_source_ref is not None:
            return state.spec.secret_source_ref.name
        if state.spec.target_secret_ref is not None:
            wanted = state.spec.target_secret_ref.name
            for (namespace, name), source in self.engine.sources.items():
                if namespace == state.namespace and source.spec is not None and \
                        target_name(source.spec, name) == wanted:
                    return name
        return None

    def _policy(self, state: IncidentState, source: str) -> PolicyState | None:
        """The RotationPolicy rotating SOURCE: the emergency one this incident created, else the secret's own."""
        ref = state.status.get("rotation") or {}
        if ref.get("policy"):
            found = self.rotator.policies.get((state.namespace, ref["policy"]))
            if found is not None or ref.get("emergency"):
                return found
        candidates = sorted((p for p in self.rotator.policies.values()
                             if p.namespace == state.namespace and p.spec is not None
                             and p.spec.secret_source_ref.name == source and not p.spec.dry_run
                             and not p.name.endswith(EMERGENCY_SUFFIX)), key=lambda p: p.name)
        return candidates[0] if candidates else None

    async def _blocked(self, ctx: Context) -> float | None:
        """Incidents on one secret go one at a time, in creation order (read from the API server, so a
        freshly restarted operator that has not seen every incident yet cannot start two at once)."""
        me, peers = await self._peers(ctx)
        earlier = plan.blocker(me, peers)
        if earlier is None:
            if ctx.state.status.get("waitingFor"):
                await self._write(ctx.state, {"waitingFor": None})
            return None
        message = (f"waiting for LeakIncident {earlier.name} (reported earlier, same SecretSource "
                   f"{ctx.source.name}) to finish its runbook; this one starts after it")
        await self._write(ctx.state, {"phase": "Waiting", "waitingFor": earlier.name,
                                      "conditions": self._ready(ctx.state, "False", "Waiting", message)})
        return 5.0

    async def _peers(self, ctx: Context) -> tuple[plan.Peer, list[plan.Peer]]:
        listed = await self.kube.list_objects(GROUP, VERSION, PLURAL, ctx.state.namespace)
        peers = []
        for body in listed:
            meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
            source = status.get("source") or (spec.get("secretSourceRef") or {}).get("name")
            if source is None and (spec.get("targetSecretRef") or {}).get("name") == ctx.target:
                source = ctx.source.name
            peers.append(plan.Peer(meta.get("name", ""), str(meta.get("creationTimestamp") or ""), source,
                                   status.get("phase"), bool(spec.get("resolved")), status.get("exposedVersion"),
                                   bool((status.get("timestamps") or {}).get("revoked"))))
        status = ctx.state.status
        me = plan.Peer(ctx.state.name, ctx.state.created, ctx.source.name, status.get("phase"), False,
                       status.get("exposedVersion"))
        return me, peers

    # -- the steps -------------------------------------------------------------------------------------

    async def _contain(self, ctx: Context) -> Outcome:
        mount, path = ctx.mount_path
        version = ctx.state.status.get("exposedVersion")
        try:
            data, found = await self.vault.kv_read(ctx.identity, mount, path, int(version) if version else None)
        except NotFound:
            return await self._contain_gone(ctx, version)
        remember({k: v.encode() for k, v in data.items()})  # masked in any log line that might quote it
        keys, problem = plan.leaked_keys(data, ctx.credential, has_policy=ctx.policy is not None,
                                         requested=ctx.spec.response.key)
        if problem:
            raise StepPending(problem, 30.0, "CannotFingerprint")
        digests = {value_hmac(self.engine.hmac_key, data[k].encode()) for k in keys}
        if ctx.source.status.get("syncedVersion") == found and ctx.source.status.get("dataHmac"):
            digests.add(str(ctx.source.status["dataHmac"]))  # the whole delivered Secret, templates included
        if plan.db_target(data):
            self._logins[ctx.key] = {k: data[k] for k in ("username", "password", "host", "port", "dbname",
                                                          "database") if k in data}
        self.engine.set_denylist(("incident", *ctx.key), frozenset(digests))
        assert ctx.source_spec.vault is not None
        radius = {"backend": f"vault:{ctx.source_spec.vault.connection}/{mount}/{path}", "versions": [found],
                  "keys": list(keys), "targetSecret": f"{ctx.state.namespace}/{ctx.target}"}
        return Outcome(f"{len(digests)} digest(s) of version {found} ({', '.join(keys)}) denylisted: Rotor refuses "
                       "to deliver the leaked value again, even if it is written back",
                       {"denylist": sorted(digests), "exposedVersion": found, "blastRadius": radius})

    async def _contain_gone(self, ctx: Context, version: str | None) -> Outcome:
        """The exposed version is no longer readable (destroyed): carry over an earlier incident's digests."""
        me, peers = await self._peers(ctx)
        earlier = plan.merged_with(me, peers)
        digests: list[str] = []
        if earlier is not None:
            other = self.incidents.get((ctx.state.namespace, earlier.name))
            digests = list((other.status if other else {}).get("denylist") or ())
        if digests:
            self.engine.set_denylist(("incident", *ctx.key), frozenset(digests))
        mount, path = ctx.mount_path
        assert ctx.source_spec.vault is not None
        radius = {"backend": f"vault:{ctx.source_spec.vault.connection}/{mount}/{path}",
                  "versions": [version] if version else [], "keys": [],
                  "targetSecret": f"{ctx.state.namespace}/{ctx.target}"}
        why = f"; {len(digests)} digest(s) carried over from LeakIncident {earlier.name}" if earlier else ""
        return Outcome(f"version {version} is no longer readable in the backend (destroyed): it cannot be "
                       f"delivered{why}", {"denylist": digests, "blastRadius": radius},
                       condition_reason="AlreadyDestroyed")

    async def _identify(self, ctx: Context) -> Outcome:
        namespace = ctx.state.namespace
        kinds = (("Job", "batch", "jobs"), ("CronJob", "batch", "cronjobs"), ("Pod", "", "pods"))
        listed = await asyncio.gather(self.kube.list_workloads(namespace),
                                      *(self.kube.list_objects(group, "v1", plural, namespace)
                                        for _, group, plural in kinds))
        objects: list[tuple[str, Mapping[str, Any]]] = list(listed[0])
        for (kind, _, _), bodies in zip(kinds, listed[1:], strict=True):
            objects.extend((kind, body) for body in bodies)
        found = plan.consumers(ctx.target, objects)
        status = ctx.state.status
        version = str(status.get("exposedVersion") or "")
        mount, path = ctx.mount_path
        leases: list[str] = []
        static_role = None
        active = dict(ctx.policy.status.get("active") or {}) if ctx.policy else {}
        if ctx.credential.kind == "dynamic":
            meta = await self.vault.kv_custom_metadata(ctx.identity, mount, path)
            if meta.get(f"{LEASE_META}{version}"):
                leases.append(fingerprint(meta[f"{LEASE_META}{version}"]))
            elif active.get("lease") and active.get("version") == version:
                leases.append(active["lease"])
        elif ctx.credential.kind == "static-role":
            static_role = await self._exposed_role(ctx, active)
        created = await self._version_created(ctx, version)
        order, why = plan.choose_order(ctx.spec.response.order, len(found))
        namespaces, accounts = plan.readers(found, (namespace, ctx.source_spec.service_account_name))
        assert ctx.source_spec.vault is not None
        radius = {**(status.get("blastRadius") or {}), "consumers": found, "namespaces": namespaces,
                  "serviceAccounts": accounts, "leases": leases, "staticRole": static_role,
                  "sourceIdentity": f"{namespace}/{ctx.source_spec.service_account_name} (Vault role "
                                    f"{ctx.source_spec.vault.role})",
                  "rotationPolicy": ctx.policy.name if ctx.policy else None,
                  "exposureWindow": {"start": created or status["timestamps"]["detected"], "end": None}}
        names = ", ".join(f"{c['kind']}/{c['name']}" for c in found) or "none"
        return Outcome(f"{len(found)} consumer(s) of Secret {ctx.target}: {names}; order {order} ({why})",
                       {"blastRadius": radius, "order": order})

    async def _exposed_role(self, ctx: Context, active: Mapping[str, str]) -> str | None:
        assert ctx.policy is not None and ctx.policy.spec is not None
        login = self._logins.get(ctx.key) or {}
        if login.get("username"):
            for role in ctx.policy.spec.overlap.static_roles:
                creds = await self.vault.static_creds(ctx.identity, ctx.policy.spec.overlap.mount, role)
                if creds["username"] == login["username"]:
                    return role
        return active.get("role")

    async def _version_created(self, ctx: Context, version: str) -> str | None:
        """When the exposed KV version was written: the start of the exposure window."""
        mount, path = ctx.mount_path
        # VaultBackend has no typed call for version times yet; this goes through its rate limits and
        # token handling all the same.
        response = await self.vault.call_as(ctx.identity, "kv-metadata", lambda c: c.secrets.kv.v2.read_secret_metadata(
            path=path, mount_point=mount), where=f"{mount}/{path}")
        created = ((response.get("data") or {}).get("versions") or {}).get(version, {}).get("created_time")
        return plan.iso(plan.parse_time(str(created))) if created else None

    async def _rotate(self, ctx: Context) -> Outcome:
        ref, progress = await self._request_rotation(ctx)
        if progress.failed:
            raise StepPending(f"RotationPolicy {ref['policy']}: {progress.failed}; the incident continues when a "
                              "rotation of it completes (fix the cause, then set rotor.dev/rotate-now)",
                              10.0, "RotationFailed")
        if not progress.readers_moved:
            raise StepPending(f"RotationPolicy {ref['policy']} rotating ({progress.phase or 'requested'})")
        assert ctx.policy is not None
        rotation = ctx.policy.status.get("rotation") or {}
        new_version = (rotation.get("new") or {}).get("version")
        self.sync_scheduler.schedule((ctx.state.namespace, ctx.source.name), 0.0)
        return Outcome(f"readers moved to version {new_version} (RotationPolicy {ref['policy']}, rotation "
                       f"{rotation.get('id')})",
                       {"rotation": {**ref, "rotationId": rotation.get("id"), "newVersion": new_version}})

    async def _request_rotation(self, ctx: Context) -> tuple[dict[str, Any], plan.PolicyProgress]:
        """Ask the RotationPolicy (or a new emergency one) to rotate, once: the request is persisted before
        it is made, and the rotate-now value is derived from the incident, so asking again changes nothing."""
        state = ctx.state
        ref = dict(state.status.get("rotation") or {})
        if not ref:
            emergency = ctx.policy is None
            name = ctx.policy.name if ctx.policy else f"{state.name[:253 - len(EMERGENCY_SUFFIX)]}{EMERGENCY_SUFFIX}"
            ref = {"policy": name, "emergency": emergency, "requestedAt": plan.iso(_now()),
                   "token": f"leak-{state.uid[:8]}-{state.name}"[:253]}
            entry, timeline = self._timeline(state, ACTOR, "RotationRequested", f"{'emergency ' if emergency else ''}"
                                             f"RotationPolicy {name} asked to rotate")
            await self._write(state, {"rotation": ref, "timeline": timeline})
            self._audit_line(state, entry)
        policy = self.rotator.policies.get((state.namespace, ref["policy"]))
        if policy is None:
            if ref.get("emergency"):
                await self._create_emergency(ctx, ref)
            raise StepPending(f"waiting for RotationPolicy {ref['policy']}")
        progress = plan.policy_progress(policy.status, ref["requestedAt"], state.status.get("exposedVersion"))
        if not progress.ours and policy.rotate_now != ref["token"]:
            await self.kube.patch_object("rotationpolicies", state.namespace, ref["policy"],
                                         {"metadata": {"annotations": {ROTATE_NOW: ref["token"]}}})
        ctx.policy = policy
        return ref, progress

    async def _create_emergency(self, ctx: Context, ref: Mapping[str, Any]) -> None:
        keys = (ctx.state.status.get("blastRadius") or {}).get("keys") or ["password"]
        spec: dict[str, Any] = {
            "secretSourceRef": {"name": ctx.source.name}, "schedule": {"interval": "8760h"}, "strategy": "overlap",
            "generator": {"type": "password", "length": 32, "key": keys[0]},
            "overlap": {"window": ctx.spec.response.emergency_window}, "verify": {"timeout": "5m"}, "deadline": "15m"}
        if ctx.spec.response.identity is not None:
            spec["identity"] = ctx.spec.response.identity.model_dump(by_alias=True)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RotationPolicy",
                "metadata": {"name": ref["policy"], "annotations": {ROTATE_NOW: ref["token"]},
                             "labels": {"rotor.dev/leak-incident": ctx.state.name[:63]},
                             "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "LeakIncident",
                                                  "name": ctx.state.name, "uid": ctx.state.uid}]},
                "spec": spec}
        try:
            await self.kube.create_object("rotationpolicies", ctx.state.namespace, body)
        except KubeError as err:
            if not err.conflict:
                raise

    async def _revoke(self, ctx: Context) -> Outcome:
        status = ctx.state.status
        mount, path = ctx.mount_path
        version = str(status.get("exposedVersion") or "")
        immediate = status.get("order") == "immediate"
        kind = ctx.credential.kind
        if not immediate or kind == "kv":
            # afterRotation: the policy's Revoking phase revokes; immediate kv: the replacement must exist
            # before the exposed version is destroyed (else nothing is left to deliver).
            ref, progress = await self._request_rotation(ctx)
            if progress.failed:
                raise StepPending(f"RotationPolicy {ref['policy']}: {progress.failed}", 10.0, "RotationFailed")
            ready = progress.published if immediate else progress.complete
            if not ready:
                raise StepPending(f"RotationPolicy {ref['policy']} rotating ({progress.phase or 'requested'})")
        methods: list[str] = []
        if kind == "dynamic":
            lease = await self._revoke_lease(ctx, version)
            methods.append(f"lease {lease} revoked" if lease else "lease revoked by the rotation")
        elif kind == "static-role":
            role = (status.get("blastRadius") or {}).get("staticRole")
            if role:
                await self._rotate_role(ctx, role)
                methods.append(f"static role {role} given a new password")
        if status.get("rotation"):
            # Only once a replacement is published: destroying the current version first would leave
            # the rotation nothing to build on (immediate dynamic/static: the rotation destroys it later).
            alive = await self.vault.kv_versions(ctx.identity, mount, path)
            new_version = ((ctx.policy.status.get("rotation") or {}).get("new") or {}).get("version") \
                if ctx.policy else None
            if version and int(version) in alive and version != new_version:
                await self.vault.kv_destroy(ctx.identity, mount, path, [int(version)])
            if version:
                methods.append(f"version {version} destroyed")
        confirmed, check = await self._confirm(ctx, version)
        now = plan.iso(_now())
        window = {**((status.get("blastRadius") or {}).get("exposureWindow") or {}), "end": now}
        radius = {**(status.get("blastRadius") or {}), "exposureWindow": window}
        if not immediate:
            # The rotation is complete: a sync now shows the denylist at work. (Before a rotation
            # starts, a refused sync would hold it back: it waits for the SecretSource to be Ready.)
            self.sync_scheduler.schedule((ctx.state.namespace, ctx.source.name), 0.0)
        revocation = {"method": "; ".join(methods), "confirmed": confirmed, "check": check}
        if confirmed is False:
            return Outcome(f"{'; '.join(methods)}, but {check}", {"revocation": revocation, "blastRadius": radius},
                           condition_status="False", condition_reason="StillValid", warning=True)
        return Outcome(f"{'; '.join(methods)}; {check}", {"revocation": revocation, "blastRadius": radius})

    async def _revoke_lease(self, ctx: Context, version: str) -> str | None:
        mount, path = ctx.mount_path
        meta = await self.vault.kv_custom_metadata(ctx.identity, mount, path)
        lease_id = meta.get(f"{LEASE_META}{version}")
        if not lease_id:
            return None
        if await self.vault.lease_exists(ctx.identity, lease_id):
            await self.vault.lease_revoke(ctx.identity, lease_id)
        await self.vault.kv_set_custom_metadata(ctx.identity, mount, path, {f"{LEASE_META}{version}": ""})
        return fingerprint(lease_id)

    async def _rotate_role(self, ctx: Context, role: str) -> None:
        """A new password for the leaked static role's user, unless Vault set one since the incident started."""
        assert ctx.policy is not None and ctx.policy.spec is not None
        mount = ctx.policy.spec.overlap.mount
        last = await self.vault.static_last_rotation(ctx.identity, mount, role)
        detected = plan.parse_time(ctx.state.status["timestamps"]["detected"])
        if not last or plan.parse_time(last) < detected:
            await self.vault.static_rotate(ctx.identity, mount, role)

    async def _confirm(self, ctx: Context, version: str) -> tuple[bool | None, str]:
        """Is the leaked credential rejected now? A database login with it must fail; where there is
        nothing to log in to, Vault's own view (lease gone, version destroyed) is the check."""
        login = self._logins.get(ctx.key)
        if login is None and version:
            mount, path = ctx.mount_path
            try:
                data, _ = await self.vault.kv_read(ctx.identity, mount, path, int(version))
                login = {k: data[k] for k in ("username", "password", "host", "port", "dbname", "database")
                         if k in data} if plan.db_target(data) else None
            except NotFound:
                login = None
        target = plan.db_target(login or {})
        if login and target:
            host, port, dbname = target  # values of the secret: used, never written into status
            outcome = await asyncio.to_thread(_try_login, host, port, dbname, login["username"], login["password"])
            if outcome == "refused":
                return True, "the database refused a login with the leaked credential"
            if outcome == "accepted":
                return False, "the database still accepts the leaked credential"
            return None, f"not confirmed: the database could not be reached ({outcome})"
        if ctx.credential.kind == "dynamic":
            return None, "database login not tried (the leaked login is no longer known to this operator)"
        mount, path = ctx.mount_path
        alive = await self.vault.kv_versions(ctx.identity, mount, path)
        if version and int(version) not in alive:
            return True, f"version {version} no longer exists in Vault (a value outside Vault is not checkable)"
        return None, "not checkable"

    async def _audit(self, ctx: Context) -> Outcome:
        status = ctx.state.status
        window = (status.get("blastRadius") or {}).get("exposureWindow") or {}
        start = plan.parse_time(window.get("start") or status["timestamps"]["detected"])
        end = plan.parse_time(window["end"]) if window.get("end") else _now()
        assert ctx.source_spec.vault is not None
        connection = self.connections.get(ctx.source_spec.vault.connection)
        file = connection.audit_log_file if connection else None
        mount, path = ctx.mount_path
        if file is None:
            note = (f"no audit log configured for Vault connection {ctx.source_spec.vault.connection!r} "
                    "(operator setting vault_connections.<name>.audit_log_file): reads not listed")
            return Outcome(note, {"auditReads": [], "auditReadsTotal": None, "auditNote": note},
                           condition_reason="NoAuditLog")
        paths = audit_paths(mount, path)
        try:
            reads, total = await asyncio.to_thread(_scan, file, paths, start, end)
        except OSError as err:
            raise StepPending(f"cannot read the Vault audit log {file}: {err.strerror}", 30.0, "AuditLogUnreadable") \
                from None
        accounts = sorted({r["serviceAccount"] for r in reads if r["serviceAccount"]})
        note = (f"{total} read(s) of {mount}/{path} between {plan.iso(start)} and {plan.iso(end)} in {file}"
                f"{' (first 100 listed)' if total > len(reads) else ''}")
        return Outcome(f"{note}; by {', '.join(accounts) or 'nobody'}",
                       {"auditReads": reads, "auditReadsTotal": total, "auditNote": note})

    async def _prevent(self, ctx: Context) -> Outcome:
        status = ctx.state.status
        ref = dict(status.get("rotation") or {})
        guardrails = [f"denylist kept: {len(status.get('denylist') or [])} digest(s) of the leaked value stay "
                      "refused by every SecretSource while this incident exists"]
        if ref:
            _, progress = await self._request_rotation(ctx)
            if not progress.complete and not progress.failed:
                raise StepPending(f"waiting for RotationPolicy {ref['policy']} to complete")
        if ref.get("emergency"):
            await self.kube.delete_object("rotationpolicies", ctx.state.namespace, ref["policy"])
            guardrails.append(f"emergency RotationPolicy {ref['policy']} removed after its rotation")
        own = self._policy_named(ctx, None if ref.get("emergency") else ref.get("policy"))
        tighten = ctx.spec.response.tighten_interval
        if tighten and own is not None and own.spec is not None:
            schedule = own.spec.schedule.model_dump(by_alias=True, exclude_none=True)
            current = parse_duration(own.spec.schedule.interval).total_seconds() if own.spec.schedule.interval \
                else None
            patch, message = plan.tightened_schedule(schedule, parse_duration(own.spec.overlap.window).total_seconds(),
                                                     tighten, parse_duration(tighten).total_seconds(), current)
            if patch is not None:
                await self.kube.patch_object("rotationpolicies", ctx.state.namespace, own.name,
                                             {"spec": {"schedule": patch}})
            guardrails.append(f"{message} (RotationPolicy {own.name})")
        elif tighten:
            guardrails.append(f"rotation interval not tightened to {tighten}: the secret has no RotationPolicy")
        radius = status.get("blastRadius") or {}
        readers = set(radius.get("serviceAccounts") or ())
        readers.add(f"{ctx.state.namespace}/{ctx.identity.service_account}")
        unexpected = sorted({r["serviceAccount"] for r in status.get("auditReads") or ()
                             if r.get("serviceAccount") and r["serviceAccount"] not in readers})
        login = self._logins.get(ctx.key) or {}
        advice = plan.recommendations(
            where=ctx.spec.exposure.where, reference=ctx.spec.exposure.reference, credential=ctx.credential,
            has_policy=own is not None, database=bool(login) or ctx.credential.kind != "kv",
            env_consumers=[f"{c['kind']}/{c['name']}" for c in radius.get("consumers") or ()
                           if set(c.get("via") or ()) & {"env", "envFrom"}],
            revocation_confirmed=(status.get("revocation") or {}).get("confirmed"),
            unexpected_readers=unexpected, unrotated=[])
        self._logins.pop(ctx.key, None)  # the check is done: drop the leaked login from memory
        return Outcome(f"{len(guardrails)} guardrail(s), {len(advice)} recommendation(s)",
                       {"guardrails": guardrails, "recommendations": advice})

    def _policy_named(self, ctx: Context, name: str | None) -> PolicyState | None:
        if name:
            return self.rotator.policies.get((ctx.state.namespace, name))
        return self._policy(ctx.state, ctx.source.name) if not (ctx.state.status.get("rotation") or {}).get(
            "emergency") else next((p for p in sorted(self.rotator.policies.values(), key=lambda p: p.name)
                                    if p.namespace == ctx.state.namespace and p.spec is not None
                                    and p.spec.secret_source_ref.name == ctx.source.name
                                    and not p.name.endswith(EMERGENCY_SUFFIX)), None)

    # -- after the runbook ------------------------------------------------------------------------------

    async def _aftercare(self, ctx: Context) -> float:
        """The runbook is done; the incident stays open. Report when the sync path refuses the leaked value
        (someone wrote it back into the backend)."""
        state = ctx.state
        ready = get_condition(ctx.source.status.get("conditions"), "Ready") or {}
        refused = ready.get("reason") == "Denylisted"
        previous = get_condition(state.status.get("conditions"), "LeakedValueRefused")
        was = bool(previous and previous.get("status") == "True")
        patch: dict[str, Any] = {}
        if refused and not was:
            message = (f"SecretSource {ctx.source.name} refused to deliver the leaked value (written back into the "
                       f"backend); Secret {ctx.target} keeps version {ctx.source.status.get('syncedVersion')}")
            patch["conditions"] = self._condition(state, "LeakedValueRefused", "True", "Denylisted", message)
            entry, patch["timeline"] = self._timeline(state, ACTOR, "LeakedValueRefused", message)
            await self._write(state, patch)
            await self._event(state, "Warning", "LeakedValueRefused", message)
            self._audit_line(state, entry)
        elif was and not refused and ready.get("status") == "True":
            await self._write(state, {"conditions": self._condition(
                state, "LeakedValueRefused", "False", "Delivering", "the SecretSource delivers a value not on "
                "the denylist")})
        return IDLE_RECHECK

    async def _resolve(self, state: IncidentState) -> None:
        who, when = plan.resolver(state.managed_fields)
        at = plan.iso(plan.parse_time(when)) if when else plan.iso(_now())
        stamps = {**(state.status.get("timestamps") or {}), "resolved": at}
        unfinished = plan.next_step(state.status.get("order"), stamps)
        message = f"resolved by {who or 'unknown'}" + (f" before the runbook finished (step {unfinished} not done)"
                                                       if unfinished else "") + "; the denylist stays"
        entry, timeline = self._timeline(state, who or "unknown", "Resolved", message)
        await self._write(state, {"phase": "Resolved", "step": None, "timestamps": stamps, "resolvedBy": who,
                                  "resolvedAt": at, "timeline": timeline,
                                  "conditions": self._ready(state, "True", "Resolved", message)})
        await self._event(state, "Normal", "Resolved", message)
        self._audit_line(state, entry)
        self._update_gauge()
        if state.status.get("source"):
            self._wake_peers(state.namespace, state.status["source"])

    # -- bookkeeping --------------------------------------------------------------------------------------

    async def _finish(self, ctx: Context, step: plan.Step, outcome: Outcome) -> None:
        state = ctx.state
        now = _now()
        stamp = plan.STAMP_OF[step]
        phase_name = plan.PHASE_OF[step]
        stamps = {**(state.status.get("timestamps") or {}), stamp: plan.iso(now)}
        order = outcome.patch.get("order") or state.status.get("order")
        entry, timeline = self._timeline(state, f"{ACTOR} (as {ctx.identity.namespace}/"
                                         f"{ctx.identity.service_account})" if step in ("contain", "revoke") else ACTOR,
                                         phase_name, outcome.message)
        conditions = self._condition(state, phase_name, outcome.condition_status,
                                     outcome.condition_reason or phase_name, outcome.message)
        done = plan.next_step(order, stamps) is None
        ready = ("True", "Prevented", "runbook complete; set spec.resolved: true to close the incident") if done else (
            "False", "InProgress", f"{phase_name}: {outcome.message}")
        conditions = set_condition(conditions, type="Ready", status=ready[0], reason=ready[1], message=ready[2],
                                   now=plan.iso(now), generation=state.generation)
        await self._write(state, {**outcome.patch, "timestamps": stamps, "step": None,
                                  "phase": plan.phase(order, stamps, False), "timeline": timeline,
                                  "conditions": conditions})
        await self._event(state, "Warning" if outcome.warning else "Normal", phase_name, outcome.message)
        self._audit_line(state, entry)
        log.info("incident %s/%s: %s (%s)", state.namespace, state.name, phase_name, outcome.message)
        detected = plan.parse_time(stamps["detected"])
        elapsed = max(0.0, (now - detected).total_seconds())
        headline = {"contain": TIME_TO_CONTAIN, "rotate": TIME_TO_ROTATE, "revoke": TIME_TO_REVOKE}.get(step)
        if headline is not None:
            headline.observe(elapsed)
        if done and state.status.get("source"):
            self._wake_peers(state.namespace, state.status["source"])

    def _entry(self, actor: str, action: str, message: str) -> dict[str, Any]:
        return {"time": plan.iso(_now()), "actor": actor[:256], "action": action, "message": message[:1024]}

    def _timeline(self, state: IncidentState, actor: str, action: str,
                  message: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A new entry, and the timeline with it (written with the step's status patch, never before)."""
        entry = self._entry(actor, action, message)
        return entry, [*(state.status.get("timeline") or []), entry][-200:]

    def _audit_line(self, state: IncidentState, entry: Mapping[str, Any]) -> None:
        """One structured line per action for the audit trail outside the cluster (never a value)."""
        record = {"kind": "LeakIncident", "incident": f"{state.namespace}/{state.name}", "uid": state.uid, **entry}
        audit.info(json.dumps(record, sort_keys=True), extra={"namespace": state.namespace, "kind": "LeakIncident",
                                                              "phase": entry.get("action")})

    async def _event(self, state: IncidentState, type: str, reason: str, message: str) -> None:
        await self.kube.post_event(kind="LeakIncident", namespace=state.namespace, name=state.name, uid=state.uid,
                                   type=type, reason=reason, message=message)

    def _condition(self, state: IncidentState, type: str, status: str, reason: str,
                   message: str) -> list[dict[str, Any]]:
        return set_condition(state.status.get("conditions") or [], type=type, status=status, reason=reason,
                             message=message[:32768], now=plan.iso(_now()), generation=state.generation)

    def _ready(self, state: IncidentState, status: str, reason: str, message: str) -> list[dict[str, Any]]:
        return self._condition(state, "Ready", status, reason, message)

    async def _write(self, state: IncidentState, patch: dict[str, Any]) -> None:
        patch = {"observedGeneration": state.generation, **patch}
        if not status_unchanged(state.status, patch) and await self.kube.patch_status(
                PLURAL, state.namespace, state.name, patch, missing_ok=True):
            state.status.update(patch)


def _scan(file: Path, paths: frozenset[str], start: datetime.datetime,
          end: datetime.datetime | None) -> tuple[list[dict[str, Any]], int]:
    with file.open(encoding="utf-8", errors="replace") as handle:
        return audit_reads(_lines(handle), paths=paths, start=start, end=end)


def _lines(handle: Any) -> Iterator[str]:
    yield from handle


def _try_login(host: str, port: int, dbname: str, user: str, password: str) -> str:
    """accepted, refused, or why the database could not be asked. The password goes to the database only."""
    import psycopg

    try:
        with psycopg.connect(host=host, port=port, dbname=dbname, user=user, password=password,
                             connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return "accepted"
    except psycopg.OperationalError as exc:
        text = str(exc)
        if getattr(exc, "sqlstate", None) in ("28P01", "28000") or "authentication failed" in text or \
                "does not exist" in text:
            return "refused"
        return "connection failed"
