"""The rotation state machine, as pure functions over plain data.

    Pending -> Publishing -> Propagating -> Verifying -> Overlapping -> Revoking -> Complete
                                  \\             \\
                                   +-------------+--> RollingBack -> RolledBack   (deadline or failed verify)

The engine persists the phase in status before and after every external action, so a restarted
operator resumes from the recorded phase; each phase's action is idempotent, and the old value
is revoked only from Revoking, which is reached only after readers verifiably moved.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from croniter import croniter

from rotor.api import keys
from rotor.api.common import parse_duration
from rotor.api.rotationpolicy import Generator, RotationPolicySpec
from rotor.planning import times
from rotor.planning.transit import delivers

Phase = Literal["Pending", "Publishing", "Propagating", "Verifying", "Overlapping", "Revoking", "Complete",
                "RollingBack", "RolledBack", "Failed"]
IDLE: frozenset[str | None] = frozenset({None, "Complete", "RolledBack", "Failed"})
ENDED_BADLY: frozenset[str | None] = frozenset({"RolledBack", "Failed"})  # Ready=False until the next rotation
ORDER: tuple[Phase, ...] = ("Pending", "Publishing", "Propagating", "Verifying", "Overlapping", "Revoking",
                            "Complete")
POLL_SECONDS = 1.0
RETRY_AFTER_FAILURE = datetime.timedelta(hours=1)
DRY_RUN_NOTE = " (dry run: nothing changed)"
STEPS_KEPT = 25  # status.rotation.steps: the newest few (the CRD allows 32)
# A rotation in progress whose status nobody changed for this long is taken over by another replica.
TAKEOVER = datetime.timedelta(seconds=10)
KUBE_CLOCK_SLACK = datetime.timedelta(seconds=2)  # managedFields and condition times have whole seconds


@dataclass(frozen=True)
class Observation:
    """What the engine saw just now (plain data)."""

    now: datetime.datetime
    source_exists: bool
    source_ready: bool
    synced_version: str | None
    rollout_done: bool
    rollout_failed: bool = False
    manual: bool = False


@dataclass(frozen=True)
class Decision:
    """What to do for the current phase: run ACTION (if any), then move to NEXT; come back in WAIT s."""

    action: Literal["start", "publish", "sync", "revoke", "rollback", "finish", "none", "invalid"]
    next: Phase | None
    wait: float = POLL_SECONDS
    message: str = ""


@dataclass(frozen=True)
class RotationRecord:
    phase: Phase | None
    started_at: datetime.datetime | None = None
    phase_since: datetime.datetime | None = None
    new: dict[str, str] = field(default_factory=dict)
    old: dict[str, str] = field(default_factory=dict)


def record_of(status: Mapping[str, Any]) -> RotationRecord:
    """The rotation recorded in a RotationPolicy's status."""
    rotation = status.get("rotation") or {}
    return RotationRecord(phase=status.get("phase"), started_at=times.parse_optional(rotation.get("startedAt")),
                          phase_since=times.parse_optional(rotation.get("phaseSince")),
                          new=dict(rotation.get("new") or {}), old=dict(rotation.get("old") or {}))


def source_ready(status: Mapping[str, Any]) -> bool:
    """Whether a SecretSource's status says it delivers. Denylisted counts as ready: a leaked value is
    exactly what a rotation must replace."""
    return any(c.get("type") == keys.READY and (c.get("status") == "True" or c.get("reason") == keys.DENYLISTED)
               for c in status.get("conditions") or [])


def validate(spec: RotationPolicySpec) -> str | None:
    """A message naming the bad field and the fix, or None (checks the CRD's schema cannot)."""
    schedule = spec.schedule
    if schedule.cron is not None and not croniter.is_valid(schedule.cron):
        return f"spec.schedule.cron {schedule.cron!r} is not a valid five-field cron expression (e.g. '0 3 * * 0')"
    window = parse_duration(spec.overlap.window)
    if schedule.interval is not None and window >= parse_duration(schedule.interval):
        return (f"spec.overlap.window {spec.overlap.window} must be shorter than spec.schedule.interval "
                f"{schedule.interval}, or rotations would overlap")
    if parse_duration(spec.deadline) <= parse_duration(spec.verify.timeout) and spec.verify.rollout:
        return f"spec.deadline {spec.deadline} must be longer than spec.verify.timeout {spec.verify.timeout}"
    if spec.strategy == "overlap" and spec.generator.type == "backend" and len(spec.overlap.static_roles) != 2:
        return "strategy overlap with generator.type backend needs spec.overlap.staticRoles: [blue, green]"
    if spec.strategy == "dynamic" and spec.dynamic is None:
        return "strategy dynamic needs spec.dynamic.role"
    if spec.strategy == "transit" and spec.transit is None:
        return "strategy transit needs spec.transit.key"
    return None


def next_due(spec: RotationPolicySpec, last: datetime.datetime | None,
             created: datetime.datetime) -> datetime.datetime:
    """When the next scheduled rotation is due (before maintenance windows)."""
    base = last or created
    if spec.schedule.interval is not None:
        return base + parse_duration(spec.schedule.interval)
    assert spec.schedule.cron is not None
    due: datetime.datetime = croniter(spec.schedule.cron, base).get_next(datetime.datetime)
    return due


def due_at(spec: RotationPolicySpec, status: Mapping[str, Any], created: datetime.datetime,
           strategy_due: datetime.datetime | None = None) -> datetime.datetime:
    """When the next rotation is due: the schedule after the last rotation, the retry time set when
    the last one failed, or earlier when the strategy needs it (STRATEGY_DUE: a lease running out)."""
    phase = status.get("phase")
    due = next_due(spec, times.parse_optional(status.get("lastRotationTime")), created)
    if phase in ENDED_BADLY and status.get("nextRotationTime"):
        due = times.parse_optional(status["nextRotationTime"]) or due
    if phase in IDLE and strategy_due is not None:
        due = min(due, strategy_due)
    return due


def status_mark(status: Mapping[str, Any]) -> tuple[str, ...]:
    """What tells one writer's step from another's in STATUS: the rotation, its phase and steps, and the
    Ready condition. A lease renewal does not change it (any replica may renew); a transition, an error
    and a claim (takeover) do."""
    rotation = status.get("rotation") or {}
    ready: Mapping[str, Any] = next((c for c in status.get("conditions") or () if c.get("type") == keys.READY), {})
    return (str(rotation.get("id") or ""), str(status.get("phase") or ""), str(rotation.get("phaseSince") or ""),
            str(len(rotation.get("steps") or ())), str(ready.get("status") or ""), str(ready.get("reason") or ""),
            str(ready.get("message") or ""))


Turn = Literal["act", "claim", "wait"]


def turn(phase: str | None, mine: bool, unchanged_for: datetime.timedelta,
         takeover: datetime.timedelta = TAKEOVER) -> tuple[Turn, float]:
    """Whether this replica acts on a policy in PHASE now, claims it first, or waits (and how long).

    A rotation in progress is carried on by the replica whose write put it where it is (MINE). Another
    one takes over only when the status stayed unchanged for TAKEOVER (whoever wrote it stopped: it
    crashed, restarted or stalled), through a claim: a write guarded by the resourceVersion it read,
    so of two replicas claiming at once one wins, and a stalled owner's next write fails. An idle
    policy needs no claim: the write that starts a rotation is guarded the same way."""
    if phase in IDLE or mine:
        return "act", 0.0
    left = (takeover - unchanged_for).total_seconds()
    return ("claim", 0.0) if left <= 0 else ("wait", left)


def claim_message(phase: str | None, now: datetime.datetime) -> str:
    return (f"{phase}: carried on by this replica from {times.iso(now)}; the one rotating made no progress "
            f"for {int(TAKEOVER.total_seconds())}s")


def stamped_at(body: Mapping[str, Any]) -> datetime.datetime | None:
    """The API server's clock when BODY was last written (the newest managedFields time; whole
    seconds), or None when it has none."""
    stamps = [times.parse_optional(entry.get("time")) for entry in (body.get("metadata") or {}).get("managedFields")
              or () if isinstance(entry, Mapping)]
    found = [stamp for stamp in stamps if stamp is not None]
    return max(found) if found else None


def failure_since(started: datetime.datetime, kube_offset: datetime.timedelta) -> datetime.datetime:
    """The rotation's start (STARTED, Rotor's clock) on the API server's clock, which stamps rollout
    failures, less the slack of whole-second stamps."""
    return started + kube_offset - KUBE_CLOCK_SLACK


def in_window(spec: RotationPolicySpec, now: datetime.datetime) -> bool:
    window = spec.schedule.window
    if window is None:
        return True
    hours, minutes = (int(x) for x in window.start.split(":"))
    start = now.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    if start > now:
        start -= datetime.timedelta(days=1)
    return now < start + parse_duration(window.duration)


def decide(spec: RotationPolicySpec, record: RotationRecord, seen: Observation, *,
           due_at: datetime.datetime) -> Decision:
    """The one step to take now, given the recorded phase and what was observed."""
    phase = record.phase
    now = seen.now
    if phase in IDLE:
        if not seen.manual and (now < due_at or not in_window(spec, now)):
            return Decision("none", None, wait=max(POLL_SECONDS, min((due_at - now).total_seconds(), 3600.0)))
        if not seen.source_exists:
            return Decision("invalid", None, wait=30, message=f"SecretSource {spec.secret_source_ref.name} "
                            "does not exist: create it or fix spec.secretSourceRef")
        if not seen.source_ready:
            return Decision("none", None, wait=10, message=f"waiting for SecretSource "
                            f"{spec.secret_source_ref.name} to be Ready before rotating")
        return Decision("start", "Pending", wait=0, message="manual rotation" if seen.manual else "scheduled")
    started = record.started_at or now
    overdue = now - started > parse_duration(spec.deadline)
    if phase == "Pending":
        return Decision("none", "Publishing", wait=0, message="publishing a new value")
    if phase == "Publishing":
        return Decision("publish", "Propagating", wait=0, message="new value published")
    if spec.dry_run and phase in ("Propagating", "Verifying", "Overlapping"):
        following: dict[str, Phase] = {"Propagating": "Verifying", "Verifying": "Overlapping",
                                       "Overlapping": "Revoking"}
        after = following[phase]
        would = {"Propagating": "would wait for the Secret to hold the new version",
                 "Verifying": "would wait for every consumer to roll out and be Ready",
                 "Overlapping": f"would keep the old value valid for {spec.overlap.window}"}[phase]
        return Decision("none", after, wait=0, message=would)
    if phase in ("Propagating", "Verifying") and not delivers(spec):
        return Decision("none", "Verifying" if phase == "Propagating" else "Overlapping", wait=0,
                        message="readers use the key in place: nothing to deliver")
    if phase == "Propagating":
        if seen.synced_version is not None and seen.synced_version == record.new.get("version"):
            return Decision("none", "Verifying", wait=0, message=f"Secret holds version {seen.synced_version}")
        if overdue:
            return _rollback(spec, "the new value did not reach the Secret before the deadline")
        return Decision("sync", None, message="waiting for the Secret to hold the new version")
    if phase == "Verifying":
        if not spec.verify.rollout or seen.rollout_done:
            return Decision("none", "Overlapping", wait=0, message="every consumer runs the new value")
        since = record.phase_since or now
        if seen.rollout_failed or overdue or now - since > parse_duration(spec.verify.timeout):
            return _rollback(spec, "consumers did not become Ready on the new value in time")
        return Decision("none", None, message="waiting for consumers to roll out")
    if phase == "Overlapping":
        remaining = parse_duration(spec.overlap.window) - (now - (record.phase_since or now))
        if remaining.total_seconds() <= 0:
            return Decision("none", "Revoking", wait=0, message="overlap window over")
        return Decision("none", None, wait=min(remaining.total_seconds(), 30.0), message="overlap window")
    if phase == "Revoking":
        return Decision("revoke", "Complete", wait=0, message="old value revoked")
    if phase == "RollingBack":
        return Decision("rollback", "RolledBack", wait=0, message="rolled back to the old value")
    return Decision("none", None, wait=60)


def start(old: dict[str, str], now: datetime.datetime, *, manual: bool, rotation_id: str) -> dict[str, Any]:
    """status.rotation for a rotation starting now from OLD (what readers use, as references)."""
    return {"id": rotation_id, "trigger": "manual" if manual else "schedule", "startedAt": times.iso(now),
            "old": old, "new": {}, "steps": []}


@dataclass(frozen=True)
class Transition:
    """What entering a phase writes and reports."""

    patch: dict[str, Any]  # the status patch, conditions aside
    ok: bool  # Ready stays True
    reason: str
    message: str  # for the condition, the Event and the log (the dry-run note included)
    outcome: str | None = None  # the rotor_rotations_total outcome, when the rotation ends here
    rollback_cause: str | None = None  # the rotor_rollbacks_total reason, when it rolled back
    event: bool = False  # worth a Kubernetes Event


_REASONS: Mapping[str, str] = {"Complete": keys.ROTATED, "RolledBack": keys.ROLLED_BACK,
                               "Failed": keys.ROTATION_FAILED}


def transition(spec: RotationPolicySpec, status: Mapping[str, Any], rotation: Mapping[str, Any], phase: Phase,
               message: str, now: datetime.datetime, created: datetime.datetime) -> Transition:
    """The status patch entering PHASE now: a step in status.rotation, and on the way out of a rotation
    the active value, counters and the next rotation time. Reasons are phase names until it ends."""
    dry = DRY_RUN_NOTE if spec.dry_run else ""
    record = dict(rotation)
    steps = list(record.get("steps") or [])[-(STEPS_KEPT - 1):]
    record["steps"] = [*steps, {"phase": phase, "time": times.iso(now), "message": message + dry}]
    record["phaseSince"] = times.iso(now)
    patch: dict[str, Any] = {"phase": phase, "rotation": record}
    if "handledRotateNow" in status:
        patch["handledRotateNow"] = status["handledRotateNow"]
    outcome = cause = None
    if phase == "Complete":
        outcome = "dry_run" if spec.dry_run else "complete"
        if not spec.dry_run:
            patch["lastRotationTime"] = times.iso(now)
            patch["rotations"] = int(status.get("rotations") or 0) + 1
            patch["active"] = dict(record.get("new") or {})
        last = now if not spec.dry_run else times.parse_optional(status.get("lastRotationTime"))
        patch["nextRotationTime"] = times.iso(next_due(spec, last, created))
    if phase in ("RollingBack", "Failed"):
        record["reason"] = message  # why; RolledBack keeps it
    if phase == "RolledBack":
        message = f"{message}: {record.get('reason', '')}"
    if phase in ENDED_BADLY:
        outcome = "rolled_back" if phase == "RolledBack" else "failed"
        if phase == "RolledBack":
            cause = "verify" if "consumers" in str(record.get("reason", "")) else "propagation"
        patch["lastRotationTime"] = status.get("lastRotationTime")
        patch["nextRotationTime"] = times.iso(now + RETRY_AFTER_FAILURE)
    return Transition(patch, phase not in ENDED_BADLY, _REASONS.get(phase, phase), message + dry, outcome, cause,
                      event=phase in ENDED_BADLY or (phase == "Complete" and not spec.dry_run))


def _rollback(spec: RotationPolicySpec, why: str) -> Decision:
    if spec.rollback:
        return Decision("none", "RollingBack", wait=0, message=why)
    return Decision("none", "Failed", wait=0, message=why + " (rollback disabled; the old value stays valid)")


_CLASSES = {"lower": string.ascii_lowercase, "upper": string.ascii_uppercase, "digits": string.digits,
            "symbols": "!#%+,-.:=@^_~"}


def generate(generator: Generator) -> str:
    """A new secret value from the system CSPRNG, with at least one character of each class."""
    if generator.type == "bytes":
        raw = secrets.token_bytes(generator.length)
        return raw.hex() if generator.encoding == "hex" else base64.b64encode(raw).decode()
    pools = [_CLASSES[c] for c in generator.classes]
    alphabet = "".join(pools)
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(generator.length))
        if all(any(ch in pool for ch in value) for pool in pools):
            return value
