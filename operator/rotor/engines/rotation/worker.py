"""Carry out RotationPolicies: observe -> planning.rotation.decide -> one backend action -> status.

The phase is written to status before and after each external action, so a restart resumes
where it stopped. Strategies differ only in how they capture the old value, publish a new one,
revoke the old and roll back (the _Strategy methods); the state machine is shared.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import signal
import uuid
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from rotor.api.common import parse_duration
from rotor.api.keys import ROTATE_NOW
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import BackendError, NotFound, VersionConflict
from rotor.backends.vault import Identity, VaultBackend
from rotor.engines.scheduler import RefreshScheduler
from rotor.engines.secretsource.worker import SecretSync
from rotor.kube import Kube
from rotor.observability.metrics import (
    LEASES,
    LEASES_EXPIRING,
    ROLLBACKS,
    ROTATION_OVERDUE,
    ROTATION_PHASE_SECONDS,
    ROTATIONS,
    ROTATIONS_IN_PROGRESS,
)
from rotor.planning.conditions import set_condition, status_unchanged
from rotor.planning.reload import pod_template, referenced_secrets, rollout_complete
from rotor.planning.rotation import (
    IDLE,
    Observation,
    RotationRecord,
    decide,
    generate,
    next_due,
    validate,
    workload_ready,
)
from rotor.planning.sync import target_name

log = logging.getLogger("rotor.engines.rotation.worker")
PLURAL = "rotationpolicies"
LEASE_META = "rotor-lease-"  # KV custom metadata key prefix holding the lease id behind a version

Key = tuple[str, str]


def _iso(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse(t: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")) if t else None


def _parse_vault_time(text: str) -> datetime.datetime:
    # Vault prints nanoseconds ("2026-11-28T17:20:01.123456789Z"); Python takes microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def fault_point(phase: str, moment: str) -> None:
    """Crash-safety tests set ROTOR_FAULT_KILL_AT=<Phase>:<before|after> to SIGKILL the operator exactly
    there (after the phase is persisted, before or after its action). Unset in production: a no-op."""
    if os.environ.get("ROTOR_FAULT_KILL_AT") == f"{phase}:{moment}":
        log.warning("fault injection: SIGKILL at %s:%s", phase, moment)
        os.kill(os.getpid(), signal.SIGKILL)


def fingerprint(lease_id: str) -> str:
    """How a lease appears in status and logs: a short digest, never the id itself."""
    return "sha256:" + hashlib.sha256(lease_id.encode()).hexdigest()[:16]


@dataclass
class PolicyState:
    namespace: str
    name: str
    uid: str
    generation: int
    created: datetime.datetime
    spec: RotationPolicySpec | None
    spec_error: str | None
    status: dict[str, Any] = field(default_factory=dict)
    rotate_now: str | None = None


class Rotator:
    def __init__(self, kube: Kube, vault: VaultBackend, engine: SecretSync, sync_scheduler: RefreshScheduler) -> None:
        self.kube = kube
        self.vault = vault
        self.engine = engine
        self.sync_scheduler = sync_scheduler
        self.policies: dict[Key, PolicyState] = {}
        self._phase_started: dict[Key, float] = {}
        self._overdue: dict[Key, bool] = {}
        self._expiring: dict[Key, bool] = {}
        self._leases: dict[Key, tuple[str, bool]] = {}

    # -- in-memory view ----------------------------------------------------------------------------

    def upsert(self, body: Mapping[str, Any]) -> Key:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        try:
            spec, error = RotationPolicySpec.model_validate(dict(body.get("spec") or {})), None
        except ValidationError as exc:
            spec, error = None, "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                          for e in exc.errors(include_input=False))
        status = dict(body.get("status") or {})
        self.policies[key] = PolicyState(
            meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation") or 0),
            _parse(meta.get("creationTimestamp")) or datetime.datetime.now(datetime.UTC), spec, error, status,
            (meta.get("annotations") or {}).get(ROTATE_NOW))
        return key

    def observe(self, body: Mapping[str, Any]) -> bool:
        """A watch event: keep status and the rotate-now annotation current; True if a manual
        rotation was just requested."""
        meta = body["metadata"]
        state = self.policies.get((meta["namespace"], meta["name"]))
        if state is None or state.uid != meta.get("uid"):
            return False
        state.status = dict(body.get("status") or {})
        requested = (meta.get("annotations") or {}).get(ROTATE_NOW)
        new = requested is not None and requested != state.rotate_now
        state.rotate_now = requested
        return new and requested != state.status.get("handledRotateNow")

    def forget(self, key: Key) -> None:
        self.policies.pop(key, None)
        for gauge in (self._overdue, self._expiring, self._leases):
            gauge.pop(key, None)

    # -- one step -----------------------------------------------------------------------------------

    async def step(self, key: Hashable) -> float | None:
        state = self.policies.get(key) if isinstance(key, tuple) else None
        if state is None:
            return None
        now = datetime.datetime.now(datetime.UTC)
        spec = state.spec
        problem = state.spec_error or (validate(spec) if spec is not None else "spec missing")
        if spec is None or problem:
            await self._write(state, {"conditions": self._ready(state, "False", "InvalidSpec", problem or "")})
            return None
        status = state.status
        rotation = dict(status.get("rotation") or {})
        record = RotationRecord(
            phase=status.get("phase"), started_at=_parse(rotation.get("startedAt")),
            phase_since=_parse(rotation.get("phaseSince")), new=dict(rotation.get("new") or {}),
            old=dict(rotation.get("old") or {}))
        source = self.engine.sources.get((state.namespace, spec.secret_source_ref.name))
        # Denylisted counts as ready: a leaked value is exactly what a rotation must replace.
        source_ready = bool(source and any(c.get("type") == "Ready" and (
            c.get("status") == "True" or c.get("reason") == "Denylisted")
            for c in source.status.get("conditions") or []))
        manual = bool(state.rotate_now) and state.rotate_now != status.get("handledRotateNow")
        rollout_done, rollout_failed = True, False
        if record.phase == "Verifying" and source is not None and source.spec is not None:
            rollout_done = await self._rolled_out(state.namespace, target_name(source.spec, source.name))
        seen = Observation(now=now, source_exists=source is not None and source.spec is not None,
                           source_ready=source_ready,
                           synced_version=(source.status.get("syncedVersion") if source else None),
                           rollout_done=rollout_done, rollout_failed=rollout_failed, manual=manual)
        last = _parse(status.get("lastRotationTime"))
        due_at = next_due(spec, last, state.created)
        if record.phase in ("RolledBack", "Failed") and status.get("nextRotationTime"):
            due_at = _parse(status["nextRotationTime"]) or due_at  # the retry time set when it failed
        if spec.strategy == "dynamic" and record.phase in IDLE:
            due_at = min(due_at, await self._lease_due(state, spec, now))
        self._gauges((state.namespace, state.name), spec, record.phase, due_at, now)
        decision = decide(spec, record, seen, due_at=due_at)
        if decision.action == "invalid":
            await self._write(state, {"conditions": self._ready(state, "False", "SourceNotFound", decision.message)})
            return decision.wait
        if decision.action == "none" and decision.next is None:
            if record.phase in IDLE and status.get("nextRotationTime") != _iso(due_at):
                patch: dict[str, Any] = {"nextRotationTime": _iso(due_at)}
                if record.phase not in ("RolledBack", "Failed"):  # keep saying why it failed
                    patch["conditions"] = self._ready(state, "True", "Idle",
                                                      decision.message or f"next rotation {_iso(due_at)}")
                await self._write(state, patch)
            return decision.wait
        assert source is not None and source.spec is not None
        fault_point(str(record.phase), "before")
        try:
            await self._act(state, spec, source.spec, decision.action, rotation, now, seen)
        except BackendError as err:
            # Backend down or denying mid-rotation: stay in this phase and retry; never skip ahead.
            log.warning("rotation %s/%s: %s failed in phase %s: %s", state.namespace, state.name, decision.action,
                        record.phase, err.message)
            await self._write(state, {"conditions": self._ready(state, "False", err.reason,
                                                                f"{record.phase or 'start'}: {err.message}")})
            return 5.0
        fault_point(str(record.phase), "after")
        if decision.next is not None:
            await self._transition(state, spec, decision.next, decision.message, now, rotation)
        return decision.wait

    def _gauges(self, key: Key, spec: RotationPolicySpec, phase: str | None, due_at: datetime.datetime,
                now: datetime.datetime) -> None:
        """Overdue rotations and held leases, recomputed per policy (bounded labels only)."""
        self._overdue[key] = phase in IDLE and now > due_at + datetime.timedelta(minutes=5)
        active = (self.policies[key].status.get("active") or {}) if key in self.policies else {}
        max_expires = _parse(active.get("leaseMaxExpires"))
        holds = spec.strategy == "dynamic" and bool(active.get("lease"))
        self._leases[key] = (spec.dynamic.mount if spec.dynamic else "", holds)
        self._expiring[key] = bool(holds and max_expires is not None and max_expires - now <= max(
            parse_duration(spec.overlap.window) * 2, datetime.timedelta(minutes=10)))
        ROTATION_OVERDUE.set(sum(self._overdue.values()))
        LEASES_EXPIRING.set(sum(self._expiring.values()))
        for mount in {m for m, _ in self._leases.values() if m}:
            LEASES.labels(mount).set(sum(1 for m, held in self._leases.values() if m == mount and held))

    # -- actions ------------------------------------------------------------------------------------

    async def _act(self, state: PolicyState, spec: RotationPolicySpec, source: SecretSourceSpec, action: str,
                   rotation: dict[str, Any], now: datetime.datetime, seen: Observation) -> None:
        strategy = _Strategy(self.vault, self._identity(state, spec, source), spec, source)
        if action == "start":
            old = await strategy.capture(dict(state.status.get("active") or {}))
            rotation.clear()
            rotation.update({"id": uuid.uuid4().hex[:12], "trigger": "manual" if seen.manual else "schedule",
                             "startedAt": _iso(now), "old": old, "new": {}, "steps": []})
            if seen.manual:
                state.status["handledRotateNow"] = state.rotate_now
        elif action == "publish":
            if spec.dry_run:
                rotation["new"] = {"version": "dry-run"}
            else:
                rotation["new"] = await strategy.publish(rotation["old"])
            self._sync_now(state, spec)
        elif action == "sync":
            self._sync_now(state, spec)
        elif action == "revoke":
            if not spec.dry_run:
                await strategy.revoke(rotation["old"], rotation["new"], rotation.get("phaseSince"))
        elif action == "rollback" and not spec.dry_run and rotation.get("new"):
            await strategy.rollback(rotation["old"], rotation["new"])
            self._sync_now(state, spec)

    def _sync_now(self, state: PolicyState, spec: RotationPolicySpec) -> None:
        self.sync_scheduler.schedule((state.namespace, spec.secret_source_ref.name), 0.0)

    async def _transition(self, state: PolicyState, spec: RotationPolicySpec, phase: str, message: str,
                          now: datetime.datetime, rotation: dict[str, Any]) -> None:
        previous = state.status.get("phase")
        key = (state.namespace, state.name)
        if previous not in IDLE and previous is not None:
            started = self._phase_started.pop(key, None)
            if started is not None:
                ROTATION_PHASE_SECONDS.labels(spec.strategy, previous).observe(now.timestamp() - started)
            ROTATIONS_IN_PROGRESS.labels(spec.strategy, previous).dec()
        if phase not in IDLE:
            self._phase_started[key] = now.timestamp()
            ROTATIONS_IN_PROGRESS.labels(spec.strategy, phase).inc()
        dry = " (dry run: nothing changed)" if spec.dry_run else ""
        steps = list(rotation.get("steps") or [])[-24:]
        steps.append({"phase": phase, "time": _iso(now), "message": message + dry})
        rotation["steps"] = steps
        rotation["phaseSince"] = _iso(now)
        patch: dict[str, Any] = {"phase": phase, "rotation": rotation}
        if "handledRotateNow" in state.status:
            patch["handledRotateNow"] = state.status["handledRotateNow"]
        reason = {"Complete": "Rotated", "RolledBack": "RolledBack", "Failed": "RotationFailed"}.get(phase, phase)
        ok = phase not in ("RolledBack", "Failed")
        if phase == "Complete":
            ROTATIONS.labels(spec.strategy, "dry_run" if spec.dry_run else "complete").inc()
            if not spec.dry_run:
                patch["lastRotationTime"] = _iso(now)
                patch["rotations"] = int(state.status.get("rotations") or 0) + 1
                patch["active"] = {k: v for k, v in rotation.get("new", {}).items()}
            patch["nextRotationTime"] = _iso(next_due(spec, now if not spec.dry_run else
                                                      _parse(state.status.get("lastRotationTime")), state.created))
        if phase in ("RollingBack", "Failed"):
            rotation["reason"] = message  # why; RolledBack keeps it
        if phase == "RolledBack":
            message = f"{message}: {rotation.get('reason', '')}"
        if phase in ("RolledBack", "Failed"):
            ROTATIONS.labels(spec.strategy, "rolled_back" if phase == "RolledBack" else "failed").inc()
            if phase == "RolledBack":
                why = str(rotation.get("reason", ""))
                ROLLBACKS.labels(spec.strategy, "verify" if "consumers" in why else "propagation").inc()
            patch["lastRotationTime"] = state.status.get("lastRotationTime")
            patch["nextRotationTime"] = _iso(now + datetime.timedelta(hours=1))
        patch["conditions"] = self._ready(state, "True" if ok else "False", reason, message + dry)
        await self._write(state, patch)
        log.info("rotation %s/%s: %s -> %s (%s)%s", state.namespace, state.name, previous, phase, message, dry)
        if phase in ("RolledBack", "Failed") or (phase == "Complete" and not spec.dry_run):
            await self.kube.post_event(kind="RotationPolicy", namespace=state.namespace, name=state.name,
                                       uid=state.uid, type="Normal" if ok else "Warning", reason=reason,
                                       message=message + dry)

    def _ready(self, state: PolicyState, status: str, reason: str, message: str) -> list[dict[str, Any]]:
        return set_condition(state.status.get("conditions") or [], type="Ready", status=status, reason=reason,
                             message=message, now=_iso(datetime.datetime.now(datetime.UTC)),
                             generation=state.generation)

    async def _write(self, state: PolicyState, patch: dict[str, Any]) -> None:
        patch = {"observedGeneration": state.generation, **patch}
        if not status_unchanged(state.status, patch) and await self.kube.patch_status(
                PLURAL, state.namespace, state.name, patch, missing_ok=True):
            state.status.update(patch)

    def _identity(self, state: PolicyState, spec: RotationPolicySpec, source: SecretSourceSpec) -> Identity:
        assert source.vault is not None
        account = spec.identity.service_account_name if spec.identity else source.service_account_name
        role = spec.identity.role if spec.identity else source.vault.role
        return Identity(source.vault.connection, state.namespace, account, role, source.vault.auth_mount,
                        source.vault.audience)

    async def _rolled_out(self, namespace: str, secret: str) -> bool:
        for kind, body in await self.kube.list_workloads(namespace):
            spec = pod_template(kind, body).get("spec") or {}
            if secret in referenced_secrets(spec) and not (rollout_complete(kind, body) and workload_ready(kind, body)):
                return False
        return True

    async def _lease_due(self, state: PolicyState, spec: RotationPolicySpec,
                         now: datetime.datetime) -> datetime.datetime:
        """Dynamic leases: renew at renewFraction of the TTL; re-issue (rotate) before the max TTL."""
        active = state.status.get("active") or {}
        expires, max_expires = _parse(active.get("leaseExpires")), _parse(active.get("leaseMaxExpires"))
        if expires is None or max_expires is None:
            return now if not active else datetime.datetime.max.replace(tzinfo=datetime.UTC)
        overlap = parse_duration(spec.overlap.window)
        if max_expires - now <= overlap * 2:
            return now  # the lease cannot be extended far enough: issue a new one
        return datetime.datetime.max.replace(tzinfo=datetime.UTC)


class _Strategy:
    """How one strategy captures, publishes, revokes and rolls back (all through VaultBackend)."""

    def __init__(self, vault: VaultBackend, identity: Identity, spec: RotationPolicySpec,
                 source: SecretSourceSpec) -> None:
        assert source.vault is not None
        self.vault, self.identity, self.spec = vault, identity, spec
        self.mount, self.path = source.vault.mount, source.vault.path

    async def _current(self) -> tuple[dict[str, str], str | None]:
        try:
            return await self.vault.kv_read(self.identity, self.mount, self.path)
        except NotFound:
            return {}, None

    async def capture(self, active: dict[str, str]) -> dict[str, str]:
        _, version = await self._current()
        old = {"version": version or "0"}
        if self.spec.strategy == "overlap" and self.spec.overlap.static_roles:
            old["role"] = active.get("role") or await self._active_role()
        if self.spec.strategy == "dynamic" and active.get("lease"):
            old["lease"] = active["lease"]
        return old

    async def _active_role(self) -> str:
        blue, green = self.spec.overlap.static_roles
        data, _ = await self._current()
        creds = await self.vault.static_creds(self.identity, self.spec.overlap.mount, blue)
        return blue if data.get("username") == creds["username"] else green

    async def _write(self, data: dict[str, str], cas: str) -> str:
        try:
            return await self.vault.kv_write(self.identity, self.mount, self.path, data, int(cas))
        except VersionConflict:
            # Our own earlier attempt (before a crash) may have written already: adopt it if it is
            # exactly one version ahead; anything else is a concurrent writer, so stop.
            _, latest = await self._current()
            if latest is not None and int(latest) == int(cas) + 1:
                return latest
            raise

    async def publish(self, old: dict[str, str]) -> dict[str, str]:
        data, latest = await self._current()
        if latest is not None and int(latest) == int(old["version"]) + 1:
            # Exactly one version ahead of what we captured: our own publish, done before a crash.
            # Adopt it; publishing again would issue a lease or set a password nobody records.
            return await self._adopt(old, latest, data)
        if self.spec.strategy == "dynamic":
            assert self.spec.dynamic is not None
            creds, lease_id, ttl = await self.vault.dynamic_issue(self.identity, self.spec.dynamic.mount,
                                                                  self.spec.dynamic.role)
            version = await self._write({**data, **creds}, old["version"])
            await self.vault.kv_set_custom_metadata(self.identity, self.mount, self.path,
                                                    {f"{LEASE_META}{version}": lease_id})
            now = datetime.datetime.now(datetime.UTC)
            _, max_ttl = await self.vault.role_ttl(self.identity, self.spec.dynamic.mount, self.spec.dynamic.role)
            return {"version": version, "lease": fingerprint(lease_id),
                    "leaseExpires": _iso(now + datetime.timedelta(seconds=ttl)),
                    "leaseMaxExpires": _iso(now + datetime.timedelta(seconds=max_ttl or ttl))}
        if self.spec.strategy == "overlap" and self.spec.overlap.static_roles:
            blue, green = self.spec.overlap.static_roles
            role = green if old.get("role") == blue else blue
            await self.vault.static_rotate(self.identity, self.spec.overlap.mount, role)
            creds = await self.vault.static_creds(self.identity, self.spec.overlap.mount, role)
            return {"version": await self._write({**data, **creds}, old["version"]), "role": role}
        value = generate(self.spec.generator)
        return {"version": await self._write({**data, self.spec.generator.key: value}, old["version"])}

    async def _adopt(self, old: dict[str, str], version: str, data: dict[str, str]) -> dict[str, str]:
        if self.spec.strategy == "dynamic":
            assert self.spec.dynamic is not None
            meta = await self.vault.kv_custom_metadata(self.identity, self.mount, self.path)
            lease_id = meta.get(f"{LEASE_META}{version}", "")
            ttl, max_ttl = await self.vault.role_ttl(self.identity, self.spec.dynamic.mount, self.spec.dynamic.role)
            now = datetime.datetime.now(datetime.UTC)
            return {"version": version, "lease": fingerprint(lease_id) if lease_id else "",
                    "leaseExpires": _iso(now + datetime.timedelta(seconds=ttl or 3600)),
                    "leaseMaxExpires": _iso(now + datetime.timedelta(seconds=max_ttl or ttl or 3600))}
        if self.spec.strategy == "overlap" and self.spec.overlap.static_roles:
            blue, green = self.spec.overlap.static_roles
            return {"version": version, "role": green if old.get("role") == blue else blue}
        return {"version": version}

    async def revoke(self, old: dict[str, str], new: dict[str, str], since: str | None) -> None:
        """Revoke the old value exactly once: each branch first checks whether it already happened."""
        if self.spec.strategy == "dynamic":
            await self._revoke_lease(old.get("version"))
        elif self.spec.strategy == "overlap" and self.spec.overlap.static_roles:
            # A fresh password for the old role's user: whatever readers had cached stops working.
            last = await self.vault.static_last_rotation(self.identity, self.spec.overlap.mount, old["role"])
            if not (since and last and _parse_vault_time(last) >= _parse(since)):  # type: ignore[operator]
                await self.vault.static_rotate(self.identity, self.spec.overlap.mount, old["role"])
        keep = self.spec.versioned.keep if self.spec.strategy == "versioned" else 1
        versions = await self.vault.kv_versions(self.identity, self.mount, self.path)
        await self.vault.kv_destroy(self.identity, self.mount, self.path, versions[:-keep] if keep else versions)

    async def rollback(self, old: dict[str, str], new: dict[str, str]) -> None:
        _, latest = await self._current()
        if latest == new.get("version") and old.get("version") not in (None, "0"):
            previous, _ = await self.vault.kv_read(self.identity, self.mount, self.path, int(old["version"]))
            await self._write(previous, latest or "0")
        if self.spec.strategy == "dynamic":
            await self._revoke_lease(new.get("version"))
        elif self.spec.strategy == "overlap" and self.spec.overlap.static_roles and new.get("role"):
            await self.vault.static_rotate(self.identity, self.spec.overlap.mount, new["role"])
        if new.get("version"):
            await self.vault.kv_destroy(self.identity, self.mount, self.path, [int(new["version"])])

    async def _revoke_lease(self, version: str | None) -> None:
        if not version:
            return
        meta = await self.vault.kv_custom_metadata(self.identity, self.mount, self.path)
        lease_id = meta.get(f"{LEASE_META}{version}")
        if lease_id:
            if await self.vault.lease_exists(self.identity, lease_id):
                await self.vault.lease_revoke(self.identity, lease_id)
            await self.vault.kv_set_custom_metadata(self.identity, self.mount, self.path,
                                                    {f"{LEASE_META}{version}": ""})
