"""Restarting readers when a Secret changes: who consumes what, when to roll, how fast. Pure.

Two annotations carry the state, both holding only keyed HMAC digests (never a value):

- on the pod template, `rotor.dev/secrets-hash`: the combined digest the pods were rolled with.
  Changing it is an ordinary rolling update; a rollback restores the old one.
- on the workload's own metadata, `rotor.dev/applied-secrets`: the per-Secret digests Rotor last
  rolled (or adopted) the workload to, and the template hash it wrote. Metadata changes do not roll
  pods, so Rotor can adopt a workload without restarting it.

A restart happens only when a Secret in the applied record now has another digest. An operator
restart or a leader change replays watch events, but the digests compare equal: nothing rolls. A
rollback changes the template, not the record: Rotor does not undo it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from rotor.api.keys import APPLIED, DATA_HMAC, INJECT_LABEL, RELOAD, RELOAD_ON, SECRETS
from rotor.api.keys import SECRETS_HASH as HASH
from rotor.planning import podspec
from rotor.planning.hashing import data_hmac
from rotor.planning.sync import ObservedSecret

Decision = Literal["none", "adopt", "restart", "wait"]
K = TypeVar("K")
_DIGEST_CHARS = 16  # 64 bits of a keyed digest: enough to see a change, useless to anyone else
_NO_CONSUMERS: Mapping[str, int] = {"current": 0, "stale": 0}


def _split(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))


@dataclass(frozen=True)
class Applied:
    """What Rotor last rolled (or adopted) a workload to."""

    secrets: Mapping[str, str]  # Secret name -> short digest
    template_hash: str | None = None  # the rotor.dev/secrets-hash Rotor wrote, if it ever restarted it

    def encode(self) -> str:
        return json.dumps({"hash": self.template_hash, "secrets": dict(sorted(self.secrets.items()))},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> Applied | None:
        if not text:
            return None
        try:
            raw = json.loads(text)
            secrets = {str(k): str(v) for k, v in dict(raw["secrets"]).items()}
            template_hash = raw.get("hash")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # edited by hand: adopt again rather than guess
        return cls(secrets, str(template_hash) if template_hash else None)


@dataclass(frozen=True)
class Workload:
    """A workload that opted in, reduced to what reload decisions need."""

    kind: str  # a restartable kind of podspec.WORKLOAD_KINDS
    namespace: str
    name: str
    injected_sources: tuple[str, ...] = ()
    referenced: tuple[str, ...] = ()  # Secrets its running containers read (podspec.RUNTIME_USES)
    reload_on: tuple[str, ...] = ()
    reload: Literal["default", "true", "never"] = "default"
    template_hash: str | None = None
    applied: Applied | None = None
    rollout_complete: bool = True
    resource_version: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


def workload_from_body(kind: str, body: Mapping[str, Any]) -> Workload | None:
    """The workload's reload view, or None when it did not opt in or cannot be restarted (Rotor then
    ignores it). Image pulls are not reads: a changed imagePullSecret restarts nothing."""
    workload_kind = podspec.BY_KIND.get(kind)
    if workload_kind is None or not workload_kind.restartable:
        return None
    meta = body.get("metadata") or {}
    template = podspec.pod_template(kind, body)
    tmeta = template.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    tannotations = dict(tmeta.get("annotations") or {})
    tlabels = dict(tmeta.get("labels") or {})

    def setting(key: str) -> str:
        return str(annotations.get(key, tannotations.get(key, ""))).strip()

    injected = _split(tannotations.get(SECRETS, "")) if tlabels.get(INJECT_LABEL) == "true" else ()
    reload_value = setting(RELOAD).lower()
    reload: Literal["default", "true", "never"] = (
        "true" if reload_value == "true" else "never" if reload_value == "never" else "default")
    reload_on = _split(setting(RELOAD_ON))
    if not injected and reload == "default" and not reload_on:
        return None
    return Workload(
        kind=kind, namespace=str(meta.get("namespace")), name=str(meta.get("name")),
        injected_sources=injected,
        referenced=podspec.referenced_secrets(template.get("spec") or {}, podspec.RUNTIME_USES),
        reload_on=reload_on, reload=reload, template_hash=tannotations.get(HASH),
        applied=Applied.decode(annotations.get(APPLIED)), rollout_complete=podspec.rollout_complete(kind, body),
        resource_version=meta.get("resourceVersion"))


def consumed_secrets(workload: Workload, targets: Mapping[str, str]) -> tuple[str, ...] | None:
    """The Secrets whose change restarts the workload; None while an injected source is unknown.

    targets maps the SecretSources of the workload's namespace to their target Secret names.
    """
    names: set[str] = set(workload.reload_on)
    for source in workload.injected_sources:
        target = targets.get(source)
        if target is None:
            return None
        names.add(target)
    if workload.reload == "true":
        names.update(workload.referenced)
    return tuple(sorted(names))


def secret_digest(hmac_key: bytes, secret: ObservedSecret) -> str:
    """What a Secret holds, as a keyed digest: Rotor's own (rotor.dev/data-hmac on what it wrote),
    else one computed from the data (a Secret Rotor does not manage)."""
    if secret.annotations.get(DATA_HMAC):
        return str(secret.annotations[DATA_HMAC])
    return data_hmac(hmac_key, secret.data, secret.type)


def short_digest(hmac_digest: str) -> str:
    return hmac_digest.removeprefix("sha256:")[:_DIGEST_CHARS]


def combined_hash(digests: Mapping[str, str]) -> str:
    """The pod-template hash over the consumed Secrets' digests (names included)."""
    mac = hashlib.sha256()
    for name in sorted(digests):
        mac.update(f"{name}={digests[name]}\n".encode())
    return "sha256:" + mac.hexdigest()[:32]


@dataclass(frozen=True)
class Plan:
    decision: Decision
    applied: Applied | None = None  # the new record (adopt, restart)
    changed: tuple[str, ...] = ()  # the Secrets whose digest moved (restart)


def plan_reload(workload: Workload, consumed: Sequence[str], digests: Mapping[str, str | None]) -> Plan:
    """Restart only when a Secret the workload was rolled (or adopted) with now has another digest.

    digests: Secret name -> HMAC ("sha256:...") or None when the Secret does not exist. A missing
    Secret waits (pods cannot start without it anyway; a deletion is no new value to read).
    """
    if any(digests.get(name) is None for name in consumed):
        return Plan("wait")
    current = {name: short_digest(str(digests[name])) for name in consumed}
    applied = workload.applied
    if workload.reload == "never":
        if applied is None or dict(applied.secrets) != current:
            return Plan("adopt", Applied(current, applied.template_hash if applied else None))
        return Plan("none")
    if applied is None:
        return Plan("adopt", Applied(current, None))
    changed = tuple(sorted(n for n in consumed if n in applied.secrets and applied.secrets[n] != current[n]))
    if changed:
        return Plan("restart", Applied(current, combined_hash(current)), changed)
    if dict(applied.secrets) != current:  # Secrets added to or removed from the workload: the user rolled it
        return Plan("adopt", Applied(current, applied.template_hash))
    return Plan("none")


def is_current(workload: Workload, consumed: Sequence[str], digests: Mapping[str, str | None]) -> bool:
    """Whether the workload's pods run the Secrets' current versions (as far as the API shows)."""
    if workload.reload == "never":
        return True  # it reads its files live: the kubelet updates them without a restart
    applied = workload.applied
    if applied is None or not workload.rollout_complete:
        return False
    if applied.template_hash is not None and workload.template_hash != applied.template_hash:
        return False  # rolled back to an older template
    return all(digests.get(n) is not None and applied.secrets.get(n) == short_digest(str(digests[n]))
               for n in consumed)


def restart_patch(workload: Workload, applied: Applied) -> dict[str, Any]:
    """Merge patch: new template hash (the rollout) and the record, guarded by resourceVersion."""
    template: dict[str, Any] = {"metadata": {"annotations": {HASH: applied.template_hash}}}
    for part in reversed(podspec.BY_KIND[workload.kind].template_path[1:]):
        template = {part: template}
    patch: dict[str, Any] = {"metadata": {"annotations": {APPLIED: applied.encode()}}, "spec": template}
    if workload.resource_version:
        patch["metadata"]["resourceVersion"] = workload.resource_version
    return patch


def adopt_patch(workload: Workload, applied: Applied) -> dict[str, Any]:
    """Merge patch recording the digests without touching the template (no rollout)."""
    patch: dict[str, Any] = {"metadata": {"annotations": {APPLIED: applied.encode()}}}
    if workload.resource_version:
        patch["metadata"]["resourceVersion"] = workload.resource_version
    return patch


# -- batching and rate limits ---------------------------------------------------------------------


def batch_delay(first_change: float, last_change: float, now: float, window: float, max_wait: float) -> float:
    """Seconds until a batch of changes is due: once quiet for WINDOW, and never later than MAX_WAIT."""
    due = min(last_change + window, first_change + max(max_wait, window))
    return max(0.0, due - now)


@dataclass(frozen=True)
class RateLimits:
    per_namespace: int
    cluster: int
    window: float  # seconds


@dataclass(frozen=True)
class Admission(Generic[K]):
    admitted: list[K]
    deferred: list[tuple[K, Literal["namespace", "cluster"]]] = field(default_factory=list)
    retry_at: float | None = None  # when a slot opens again (None: nothing deferred)


def fair_order(candidates: Sequence[tuple[str, K]], recent: Sequence[tuple[str, float]]) -> list[tuple[str, K]]:
    """CANDIDATES round-robin across namespaces (each namespace's own order kept): one of each, then the
    next of each. Namespaces that restarted least in the window (RECENT: (namespace, time)) go first, then
    the one whose last restart is oldest, then order of appearance: a namespace with many restarts
    pending cannot take every cluster-wide slot, whatever its name."""
    queues: dict[str, list[K]] = {}
    for ns, key in candidates:
        queues.setdefault(ns, []).append(key)
    counts = Counter(ns for ns, _ in recent)
    last: dict[str, float] = {}
    for ns, t in recent:
        last[ns] = max(t, last.get(ns, t))
    arrival = {ns: i for i, ns in enumerate(queues)}
    order = sorted(queues, key=lambda ns: (counts[ns], last.get(ns, float("-inf")), arrival[ns]))
    longest = max((len(q) for q in queues.values()), default=0)
    return [(ns, queues[ns][i]) for i in range(longest) for ns in order if i < len(queues[ns])]


def admit_restarts(candidates: Sequence[tuple[str, K]], history: Iterable[tuple[str, float]], now: float,
                   limits: RateLimits) -> Admission[K]:
    """Which restarts may go now under sliding-window limits per namespace and cluster-wide, taken
    round-robin across namespaces (fair_order).

    candidates: (namespace, key), each namespace's in the order they should go; history: (namespace,
    time) of the restarts already made.
    """
    recent = [(ns, t) for ns, t in history if now - t < limits.window]
    per_ns = Counter(ns for ns, _ in recent)
    used = len(recent)
    admitted: list[K] = []
    deferred: list[tuple[K, Literal["namespace", "cluster"]]] = []
    times: list[tuple[str, float]] = list(recent)
    for ns, key in fair_order(candidates, recent):
        if used >= limits.cluster:
            deferred.append((key, "cluster"))
        elif per_ns[ns] >= limits.per_namespace:
            deferred.append((key, "namespace"))
        else:
            admitted.append(key)
            used += 1
            per_ns[ns] += 1
            times.append((ns, now))
    retry_at = None
    if deferred:
        retry_at = min(t for _, t in times) + limits.window if times else now
    return Admission(admitted, deferred, retry_at)


def consumer_counts(views: Iterable[tuple[str, Sequence[str], bool]]) -> tuple[
        dict[tuple[str, str], dict[str, int]], dict[str, dict[str, int]]]:
    """Per (namespace, Secret) and per namespace: how many consumers are current and how many stale.

    views: (namespace, consumed Secrets, is_current) per workload.
    """
    per_secret: dict[tuple[str, str], dict[str, int]] = {}
    per_namespace: dict[str, dict[str, int]] = {}
    for namespace, consumed, current in views:
        version = "current" if current else "stale"
        totals = per_namespace.setdefault(namespace, {"current": 0, "stale": 0})
        totals[version] += 1
        for name in consumed:
            counts = per_secret.setdefault((namespace, name), {"current": 0, "stale": 0})
            counts[version] += 1
    return per_secret, per_namespace


@dataclass(frozen=True)
class ConsumerReport:
    """One namespace's consumers: totals for the rotor_consumers gauge, and the status.consumers of
    each SecretSource whose counts changed (only those are written)."""

    totals: Mapping[str, int]
    changed: Mapping[str, Mapping[str, int]]  # SecretSource -> {"current": n, "stale": m}


def report_consumers(namespace: str, workloads: Iterable[Workload], targets: Mapping[str, str],
                     digests: Mapping[str, str | None],
                     reported: Mapping[str, Mapping[str, int]]) -> ConsumerReport:
    """Count the namespace's consumers against the Secrets' current digests.

    targets: SecretSource -> target Secret; digests: Secret name -> HMAC (as far as known);
    reported: SecretSource -> status.consumers as last seen or written. A source never reported
    and with no consumers is left alone (no status write for the many sources nobody reloads).
    """
    views = [(namespace, consumed, is_current(w, consumed, digests))
             for w in workloads if (consumed := consumed_secrets(w, targets)) is not None]
    per_secret, per_namespace = consumer_counts(views)
    changed: dict[str, Mapping[str, int]] = {}
    for source, target in targets.items():
        counts = per_secret.get((namespace, target), dict(_NO_CONSUMERS))
        before = reported.get(source)
        if counts != before and not (before is None and not any(counts.values())):
            changed[source] = counts
    return ConsumerReport(per_namespace.get(namespace, dict(_NO_CONSUMERS)), changed)

