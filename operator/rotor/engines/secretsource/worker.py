"""Carry out SecretSource syncs: fetch -> plan_sync -> one Kubernetes write (or none) -> status.

Holds the operator's in-memory view (sources from their watch, managed Secrets from theirs) so
that a refresh where nothing changed costs one backend read and no Kubernetes request at all.
"""

from __future__ import annotations

import datetime
import logging
import random
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from rotor.api import keys
from rotor.api.common import parse_duration
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.protocols import Backend, BackendError
from rotor.kube import Kube, KubeError
from rotor.observability.metrics import (
    DENYLIST_REFUSALS,
    DRIFT,
    PROPAGATION_SECONDS,
    SECRET_WRITES,
    SOURCES,
    SYNC_SECONDS,
    SYNCS,
)
from rotor.planning.conditions import get_condition, same_conditions, set_condition
from rotor.planning.hashing import data_hmac
from rotor.planning.injection import SourceView as InjectionView
from rotor.planning.schedule import backoff_delay, refresh_delay
from rotor.planning.sync import ObservedSecret, Owner, SyncPlan, plan_sync, target_name

log = logging.getLogger("rotor.sync")
PLURAL = "secretsources"

Key = tuple[str, str]  # (namespace, name)


@dataclass
class SourceState:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: SecretSourceSpec | None
    spec_error: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    failures: int = 0
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    resource_version: str | None = None
    refresh_now: str | None = None  # the rotor.dev/refresh-now value last acted on

    @property
    def owner(self) -> Owner:
        return Owner(self.namespace, self.name, self.uid)


def parse_spec(raw: Mapping[str, Any]) -> tuple[SecretSourceSpec | None, str | None]:
    """The spec, or a message naming each bad field (the CRD catches most; this is the backstop)."""
    try:
        return SecretSourceSpec.model_validate(dict(raw)), None
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False))
        return None, problems


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class SecretSync:
    def __init__(self, kube: Kube, backends: Mapping[str, Backend], hmac_key: bytes, *,
                 denylist: frozenset[str] = frozenset()) -> None:
        self.kube = kube
        self.backends = backends
        self.hmac_key = hmac_key
        self.sources: dict[Key, SourceState] = {}
        self.secrets: dict[Key, ObservedSecret] = {}  # managed Secrets, from their watch
        self._denylists: dict[Hashable, frozenset[str]] = {"static": denylist}
        self.denylist = denylist
        self._rng = random.Random()
        # The Ready gauge, kept incrementally: recounting every source on each sync is O(N) per sync.
        self._ready_label: dict[Key, tuple[str, str]] = {}
        self._ready_count: dict[tuple[str, str], int] = {}
        self._secrets_loaded = False  # True once load_secrets() filled the view: a miss means "absent"

    # -- the in-memory view, fed by the handlers ------------------------------------------------

    def observe_source(self, event_type: str | None, body: Mapping[str, Any]) -> tuple[Key, str | None]:
        """Fold one watch event of a SecretSource into the view. Returns its key and what to do:
        "sync" (new, spec changed, or being deleted: the worker applies deletionPolicy), "forget"
        (gone, or going with nothing left for Rotor to do), or None (only status or metadata moved)."""
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.forget_source(key)
            return key, "forget"
        state = self.sources.get(key)
        if state is None or state.uid != meta["uid"] or state.generation != int(meta.get("generation") or 0):
            # New, re-created, or its spec changed (generation counts spec changes only).
            self.upsert_source(body)
            state = self.sources[key]
            action: str | None = "sync"
        else:
            state.status = dict(body.get("status") or {})
            action = None
        requested = (meta.get("annotations") or {}).get(keys.REFRESH_NOW)
        if requested != state.refresh_now:
            # A new rotor.dev/refresh-now value (`rotor refresh`): do not wait for the interval.
            state.refresh_now = requested
            action = "sync" if requested else action
        state.finalizers = tuple(meta.get("finalizers") or ())
        state.resource_version = meta.get("resourceVersion")
        if meta.get("deletionTimestamp"):
            if keys.CLEANUP_FINALIZER not in state.finalizers:
                # Nothing of Rotor's to clean up (it writes nothing before its finalizer is on), or the
                # cleanup is done: no more syncs; Kubernetes deletes the object.
                state.deleting = True
                return key, "forget"
            if not state.deleting:
                state.deleting = True
                action = "sync"
        return key, action

    def upsert_source(self, body: Mapping[str, Any]) -> Key:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        spec, error = parse_spec(body.get("spec") or {})
        previous = self.sources.get(key)
        state = SourceState(meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation") or 0),
                            spec, error, dict(body.get("status") or {}),
                            finalizers=tuple(meta.get("finalizers") or ()),
                            resource_version=meta.get("resourceVersion"),
                            refresh_now=(meta.get("annotations") or {}).get(keys.REFRESH_NOW))
        if previous is not None and previous.uid == state.uid:
            state.failures = previous.failures
        self.sources[key] = state
        return key

    def forget_source(self, key: Key) -> None:
        self.sources.pop(key, None)
        self._count_ready(key, None)

    def observe_secret(self, event_type: str | None, body: Mapping[str, Any]) -> Key | None:
        """Record a managed Secret's change; returns the source to sync if the Secret drifted."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        source_name = (meta.get("labels") or {}).get(keys.SOURCE_LABEL)
        if event_type == "DELETED":
            self.secrets.pop(key, None)
        else:
            self.secrets[key] = ObservedSecret.from_json(body)
        if not source_name:
            return None
        source_key = (meta["namespace"], source_name)
        state = self.sources.get(source_key)
        if state is None or state.spec is None or state.deleting:
            return None
        if target_name(state.spec, state.name) != meta["name"]:
            return None
        expected = state.status.get("dataHmac")
        if event_type == "DELETED":
            return source_key
        observed = self.secrets[key]
        managed = [k for k in observed.annotations.get(keys.MANAGED_KEYS, "").split(",") if k]
        actual = data_hmac(self.hmac_key, {k: observed.data[k] for k in managed if k in observed.data},
                           state.spec.target.type)
        if expected and (actual != expected or observed.annotations.get(keys.DATA_HMAC) != expected):
            return source_key
        return None

    async def load_secrets(self, namespaces: Sequence[str]) -> None:
        """Every managed Secret, once at start-up (before the watch starts; it keeps the view current after).
        Then a Secret missing from the view does not exist, and a first sync creates it without reading
        first (creationPolicy Merge still reads: it writes into a Secret Rotor does not manage). Should it
        exist after all (a lagging watch, a foreign Secret of that name), the create conflicts and the
        sync reads it and plans again."""
        selector = f"{keys.MANAGED_BY}={keys.MANAGED_BY_VALUE}"
        scopes: list[str | None] = list(namespaces) or [None]
        for namespace in scopes:
            for ns, secret in await self.kube.list_labelled_secrets(selector, namespace):
                self.secrets[(ns, secret.name)] = secret
        self._secrets_loaded = True

    def set_denylist(self, owner: Hashable, digests: frozenset[str]) -> None:
        """Value digests (planning.hashing.value_hmac) that must never be delivered; OWNER is the incident
        that reported them. Sources are re-checked right away by the caller scheduling them."""
        if digests:
            self._denylists[owner] = digests
        else:
            self._denylists.pop(owner, None)
        self.denylist = frozenset().union(*self._denylists.values())

    # -- what other engines and the webhook see (rotor.engines.ports.Sources) ---------------------

    def source(self, namespace: str, name: str) -> SourceState | None:
        state = self.sources.get((namespace, name))
        return None if state is None or state.deleting else state

    def source_for_target(self, namespace: str, target: str) -> str | None:
        for (ns, name), state in self.sources.items():
            if ns == namespace and state.spec is not None and target_name(state.spec, name) == target:
                return name
        return None

    def source_view(self, namespace: str, name: str) -> InjectionView:
        """What the webhook needs of a SecretSource, as plain data (names and status, no values)."""
        state = self.source(namespace, name)
        if state is None:
            return InjectionView(name, exists=False)
        ready = get_condition(state.status.get("conditions"), keys.READY) or {}
        target = target_name(state.spec, name) if state.spec is not None else name
        secret = self.secrets.get((namespace, target))
        return InjectionView(name, exists=True, ready=ready.get("status") == "True", target=target,
                             reason=str(ready.get("reason") or ""), message=str(ready.get("message") or ""),
                             keys=tuple(sorted(secret.data)) if secret is not None else None)

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
                return 1.0 if err.conflict else backoff_delay(state.failures + 1, self._rng.random(), cap=300.0)
            state.finalizers = (*state.finalizers, keys.CLEANUP_FINALIZER)
        if state.spec is None:
            await self._report(state, SyncPlan("fail", state.name, "InvalidSpec", state.spec_error or ""), None)
            return None  # nothing will change until the spec does
        spec = state.spec
        started = time.monotonic()
        backend = self.backends.get(spec.provider)
        plan: SyncPlan
        try:
            if backend is None:
                raise KeyError(spec.provider)
            fetched = await backend.fetch(state.namespace, spec)
            existing = await self._existing(state.namespace, target_name(spec, state.name),
                                            merge=spec.target.creation_policy == "Merge")
            plan = plan_sync(spec=spec, owner=state.owner, fetched=fetched, existing=existing,
                             hmac_key=self.hmac_key, denylist=self.denylist)
            plan = await self._apply(state, plan, existing, started)
        except BackendError as err:
            plan = SyncPlan("fail", target_name(spec, state.name), err.reason, err.message)
        except KubeError as err:
            reason = "PermissionDenied" if err.status == 403 else (
                "InvalidSpec" if err.status == 422 else "KubernetesError")
            plan = SyncPlan("fail", target_name(spec, state.name), reason,
                            f"writing Secret {target_name(spec, state.name)}: {err.message or err.reason}")
        SYNC_SECONDS.labels(spec.provider).observe(time.monotonic() - started)
        result = plan.action if plan.action != "fail" else plan.reason
        SYNCS.labels(spec.provider, {"none": "unchanged", "create": "changed", "update": "changed",
                                     "recreate": "changed"}.get(result, result)).inc()
        if plan.reason == "Denylisted":
            DENYLIST_REFUSALS.inc()
        if plan.action == "fail":
            state.failures += 1
            # Capped at 5 minutes whatever the refresh interval: a failing backend is not hammered.
            delay = backoff_delay(state.failures, self._rng.random(), cap=300.0)
            log.warning("sync of SecretSource %s/%s failed: %s: %s (retry in %.0fs)",
                        state.namespace, state.name, plan.reason, plan.message, delay)
        else:
            state.failures = 0
            delay = refresh_delay(parse_duration(spec.refresh.interval).total_seconds(), spec.refresh.jitter,
                                  self._rng.random())
            if plan.action != "none":
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
            self._remember(state.namespace, fresh, plan.target)
            assert state.spec is not None
            backend = self.backends[state.spec.provider]
            fetched = await backend.fetch(state.namespace, state.spec)
            plan = plan_sync(spec=state.spec, owner=state.owner, fetched=fetched, existing=fresh,
                             hmac_key=self.hmac_key, denylist=self.denylist)
            if plan.secret is None or plan.action in ("none", "fail"):
                return plan
            written = await self.kube.write_secret(state.namespace, plan.action, plan.secret, state.owner, fresh)
        self._remember(state.namespace, written, plan.target)
        SECRET_WRITES.labels(plan.action).inc()
        if existing is not None and state.status.get("dataHmac") != plan.data_hmac:
            PROPAGATION_SECONDS.observe(time.monotonic() - started)  # new backend value -> Secret written
        if existing is not None and state.status.get("dataHmac") == plan.data_hmac:
            DRIFT.inc()  # the backend did not change; the Secret had been edited
        return plan

    def _remember(self, namespace: str, secret: ObservedSecret | None, name: str) -> None:
        if secret is None:
            self.secrets.pop((namespace, name), None)
        else:
            self.secrets[(namespace, name)] = secret

    async def _report(self, state: SourceState, plan: SyncPlan, delay: float | None) -> None:
        """Write status only when it changes; post an Event for changes and new failures."""
        now = now_iso()
        old = state.status
        ok = plan.action != "fail"
        conditions = set_condition(old.get("conditions") or [], type="Ready", status="True" if ok else "False",
                                   reason="Synced" if ok else plan.reason,
                                   message=plan.message if not ok else f"Secret {plan.target} is up to date",
                                   now=now, generation=state.generation)
        status: dict[str, Any] = {"conditions": conditions, "observedGeneration": state.generation,
                                  "targetSecret": plan.target}
        if ok:
            status["dataHmac"] = plan.data_hmac
            status["syncedVersion"] = plan.version
            if plan.data_hmac != old.get("dataHmac"):
                status["lastChangeTime"] = now  # a new value: rotor_secret_age_seconds counts from here
        changed_data = plan.action in ("create", "update", "recreate")
        material = (not same_conditions(old.get("conditions"), conditions)
                    or any(old.get(k) != v for k, v in status.items() if k != "conditions"))
        if changed_data or material or "lastSyncTime" not in old:
            if ok:
                status["lastSyncTime"] = now
            if delay is not None:
                status["nextSyncTime"] = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                    seconds=delay)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
            try:
                await self.kube.patch_status(PLURAL, state.namespace, state.name, status)
                state.status = {**old, **status}
            except KubeError as err:
                if not err.not_found:
                    log.warning("status of SecretSource %s/%s not written: %s", state.namespace, state.name,
                                err.reason)
        # Counted before the awaits below: meanwhile a watch event older than our patch may replace
        # state.status for a moment (the event of our own patch follows it).
        ready = get_condition(state.status.get("conditions"), "Ready")
        self._count_ready((state.namespace, state.name),
                          (ready.get("status", "Unknown"), ready.get("reason", "")) if ready else ("Unknown", ""))
        previous = get_condition(old.get("conditions"), "Ready")
        if changed_data:
            await self.kube.post_event(kind="SecretSource", namespace=state.namespace, name=state.name,
                                       uid=state.uid, type="Normal", reason="Synced",
                                       message=f"{plan.message} (version {plan.version or '-'})")
        elif not ok and (previous is None or previous.get("reason") != plan.reason):
            await self.kube.post_event(kind="SecretSource", namespace=state.namespace, name=state.name,
                                       uid=state.uid, type="Warning", reason=plan.reason, message=plan.message)

    def _count_ready(self, key: Key, label: tuple[str, str] | None) -> None:
        old = self._ready_label.pop(key, None)
        if label is not None:
            self._ready_label[key] = label
        if old == label:
            return
        if old is not None:
            self._ready_count[old] -= 1
            if self._ready_count[old]:
                SOURCES.labels(*old).set(self._ready_count[old])
            else:
                del self._ready_count[old]
                SOURCES.remove(*old)
        if label is not None:
            self._ready_count[label] = self._ready_count.get(label, 0) + 1
            SOURCES.labels(*label).set(self._ready_count[label])

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
            delay = backoff_delay(state.failures, self._rng.random(), cap=300.0)
            log.warning("cleanup of deleted SecretSource %s/%s failed: %s (retry in %.0fs)", state.namespace,
                        state.name, err.reason, delay)
            return delay
        return None  # its DELETED event forgets it
