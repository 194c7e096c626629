"""A SecretSource's status after a sync, and the decisions around a sync: when to run it again,
whether a managed Secret drifted from what status says, which reason a failed write reports.

Plain data in and out; the worker (rotor.engines.secretsource.worker) does the I/O.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rotor.api import keys
from rotor.planning import times
from rotor.planning.conditions import get_condition, same_conditions, set_condition
from rotor.planning.hashing import data_hmac
from rotor.planning.schedule import backoff_delay, refresh_delay
from rotor.planning.sync import ObservedSecret, SyncPlan, managed_keys

RETRY_CAP = 300.0  # seconds: a failing backend or API server is retried at least this often, never hammered
MAX_INTERVAL = 3660 * 86400.0  # seconds (the schema's longest duration): a defensive cap, far from overflow
EARLY_BURST = 3  # syncs before a source is due (refresh-now, drift) allowed at once, then one per minimum interval
CHANGED = ("create", "update", "recreate")  # plan actions that write the Secret's data


@dataclass(frozen=True)
class EventPlan:
    type: str  # "Normal" or "Warning"
    reason: str
    message: str


@dataclass(frozen=True)
class StatusPlan:
    patch: dict[str, Any] | None  # the status merge patch; None: nothing a reader cares about changed
    event: EventPlan | None


def sync_status(old: Mapping[str, Any], plan: SyncPlan, *, generation: int, now: datetime.datetime,
                delay: float | None, notice: str = "") -> StatusPlan:
    """What to write into status after PLAN (OLD: status as last seen), and the Event to post: one
    for each data change and for each new failure reason (not for every retry of the same one).
    NOTICE: said after a success (e.g. the interval was raised to the operator's minimum).
    targetSecret names the Secret Rotor last wrote: a failed sync keeps the old name, so a renamed
    target's old Secret is still known (and released) once the new one is written."""
    stamp = times.iso(now)
    ok = plan.action != "fail"
    message = (f"Secret {plan.target} is up to date" + (f"; {notice}" if notice else "")) if ok else plan.message
    conditions = set_condition(old.get("conditions") or [], type=keys.READY, status="True" if ok else "False",
                               reason=keys.SYNCED if ok else plan.reason, message=message,
                               now=stamp, generation=generation)
    status: dict[str, Any] = {"conditions": conditions, "observedGeneration": generation,
                              "targetSecret": plan.target if ok else (old.get("targetSecret") or plan.target)}
    if ok:
        status["dataHmac"] = plan.data_hmac
        status["syncedVersion"] = plan.version
        if plan.data_hmac != old.get("dataHmac"):
            status["lastChangeTime"] = stamp  # a new value: rotor_secret_age_seconds counts from here
    changed_data = plan.action in CHANGED
    material = (not same_conditions(old.get("conditions"), conditions)
                or any(old.get(k) != v for k, v in status.items() if k != "conditions"))
    patch: dict[str, Any] | None = None
    if changed_data or material or "lastSyncTime" not in old:
        patch = status
        if ok:
            patch["lastSyncTime"] = stamp
        if delay is not None:
            patch["nextSyncTime"] = times.iso(now + datetime.timedelta(seconds=delay))
    previous = get_condition(old.get("conditions"), keys.READY)
    event = None
    if changed_data:
        event = EventPlan("Normal", keys.SYNCED, f"{plan.message} (version {plan.version or '-'})")
    elif not ok and (previous is None or previous.get("reason") != plan.reason):
        event = EventPlan("Warning", plan.reason, plan.message)
    return StatusPlan(patch, event)


def still_synced(old: Mapping[str, Any], plan: SyncPlan, *, generation: int, notice: str = "") -> bool:
    """Whether PLAN leaves status as it is: sync_status would plan no patch and no Event. The question an
    unchanged refresh asks, answered without building a status (the cheap path; False: ask sync_status)."""
    if plan.action != "none" or "lastSyncTime" not in old or old.get("observedGeneration") != generation:
        return False
    if (old.get("targetSecret"), old.get("dataHmac"), old.get("syncedVersion")) != (
            plan.target, plan.data_hmac, plan.version):
        return False
    ready = [c for c in old.get("conditions") or () if c.get("type") == keys.READY]
    message = f"Secret {plan.target} is up to date" + (f"; {notice}" if notice else "")
    return len(ready) == 1 and (ready[0].get("status"), ready[0].get("reason"), ready[0].get("message"),
                                ready[0].get("observedGeneration")) == ("True", keys.SYNCED, message, generation)


def ready_label(status: Mapping[str, Any]) -> tuple[str, str]:
    """(status, reason) of the Ready condition: the rotor_secretsources gauge's labels."""
    ready = get_condition(status.get("conditions"), keys.READY)
    return (ready.get("status", "Unknown"), ready.get("reason", "")) if ready else ("Unknown", "")


def result_label(plan: SyncPlan) -> str:
    """The rotor_syncs_total result: unchanged, changed, or the failure's reason."""
    if plan.action == "fail":
        return plan.reason
    return "unchanged" if plan.action == "none" else "changed"


def next_delay(plan: SyncPlan, failures: int, u: float, *, interval: float, jitter: float,
               minimum: float = 1.0) -> float:
    """Seconds until the next sync: the refresh interval (jittered by U in [0, 1)) after a success,
    never under MINIMUM (the operator's); after the FAILURES-th failure in a row, backoff capped at
    RETRY_CAP whatever the interval."""
    if plan.action == "fail":
        return retry_delay(failures, u)
    return max(minimum, refresh_delay(effective_interval(interval, minimum), jitter, u))


def effective_interval(interval: float, minimum: float) -> float:
    """The refresh interval a source gets: what it asks for, within [MINIMUM, MAX_INTERVAL]."""
    return min(MAX_INTERVAL, max(minimum, interval))


def interval_notice(interval: float, minimum: float) -> str:
    """What status says when a source asks for less than the operator's minimum (empty: it does not)."""
    if interval >= minimum:
        return ""
    return (f"spec.refresh.interval is below the operator's minimum of {minimum:g}s: refreshed every "
            f"{minimum:g}s")


@dataclass(slots=True)  # one per SecretSource
class Bucket:
    """Syncs a source may have before it is due (refresh-now, drift restores): BURST at once, then one
    per RATE seconds. Rotor's own requests (a rotation propagating) do not draw from it."""

    tokens: float
    at: float  # monotonic seconds when TOKENS was counted

    def take(self, now: float, *, rate: float, burst: int) -> float:
        """Take one token at NOW: 0.0 if there was one, else seconds until there is (nothing taken)."""
        self.tokens = min(float(burst), self.tokens + max(0.0, now - self.at) / rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) * rate


def retry_delay(failures: int, u: float) -> float:
    return backoff_delay(failures, u, cap=RETRY_CAP)


def write_failure(target: str, status: int, reason: str, message: str) -> SyncPlan:
    """The failed plan for a Kubernetes API error (STATUS, REASON, MESSAGE) while writing TARGET."""
    why = {403: keys.PERMISSION_DENIED, 422: keys.INVALID_SPEC}.get(status, keys.KUBERNETES_ERROR)
    return SyncPlan("fail", target, why, f"writing Secret {target}: {message or reason}")


def drifted(observed: ObservedSecret | None, expected: str | None, hmac_key: bytes, secret_type: str) -> bool:
    """Whether a managed Secret (None: deleted) no longer holds what status says Rotor wrote (EXPECTED,
    status.dataHmac): someone edited its managed keys or Rotor's digest annotation. Keys others
    added to a Merge target are not Rotor's and do not count."""
    if observed is None:
        return True
    if not expected:
        return False
    managed = {k: observed.data[k] for k in managed_keys(observed.annotations) if k in observed.data}
    return data_hmac(hmac_key, managed, secret_type) != expected or observed.annotations.get(keys.DATA_HMAC) != expected
