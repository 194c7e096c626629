"""The rotation state machine: pure decisions over recorded phase and observations."""

from __future__ import annotations

import datetime
from typing import Any

from rotor.api.rotationpolicy import Generator, RotationPolicySpec, Schedule
from rotor.planning.leases import (
    NEVER,
    held_leases,
    lease_due,
    lease_ids,
    lease_key,
    next_version,
    renew_at,
    rotation_key,
    stale_marks,
    written_by,
)
from rotor.planning.podspec import rollout_failed
from rotor.planning.rotation import (
    TAKEOVER,
    Observation,
    RotationRecord,
    claim_message,
    decide,
    due_at,
    failure_since,
    generate,
    in_window,
    next_due,
    record_of,
    source_ready,
    stamped_at,
    start,
    status_mark,
    transition,
    turn,
    validate,
)

T0 = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


def spec(**over: Any) -> RotationPolicySpec:
    raw: dict[str, Any] = {"secretSourceRef": {"name": "db"}, "strategy": "versioned",
                           "schedule": {"interval": "720h"}, "overlap": {"window": "10m"},
                           "verify": {"timeout": "5m"}, "deadline": "1h"}
    raw.update(over)
    return RotationPolicySpec.model_validate(raw)


def seen(**over: Any) -> Observation:
    values: dict[str, Any] = {"now": T0, "source_exists": True, "source_ready": True, "synced_version": "1",
                              "rollout_done": True}
    values.update(over)
    return Observation(**values)


def test_idle_until_due_then_start() -> None:
    s = spec()
    assert decide(s, RotationRecord(None), seen(), due_at=T0 + datetime.timedelta(hours=1)).action == "none"
    d = decide(s, RotationRecord(None), seen(), due_at=T0)
    assert d.action == "start" and d.next == "Pending"


def test_manual_rotation_skips_the_schedule_but_not_a_missing_source() -> None:
    later = T0 + datetime.timedelta(days=10)
    assert decide(spec(), RotationRecord("Complete"), seen(manual=True), due_at=later).action == "start"
    missing = decide(spec(), RotationRecord(None), seen(manual=True, source_exists=False), due_at=T0)
    assert missing.action == "invalid" and "db" in missing.message
    not_ready = decide(spec(), RotationRecord(None), seen(manual=True, source_ready=False), due_at=T0)
    assert not_ready.action == "none" and not_ready.next is None


def test_the_happy_path_walks_every_phase_in_order() -> None:
    s = spec()
    phases = []
    record = RotationRecord("Pending", started_at=T0, phase_since=T0, new={"version": "2"})
    while record.phase != "Complete":
        d = decide(s, record, seen(synced_version="2"), due_at=T0)
        if d.next is None:  # overlapping: time passes
            record = RotationRecord(record.phase, T0, T0 - datetime.timedelta(minutes=11), record.new)
            continue
        phases.append((record.phase, d.action))
        record = RotationRecord(d.next, T0, T0, record.new)
    assert phases == [("Pending", "none"), ("Publishing", "publish"), ("Propagating", "none"),
                      ("Verifying", "none"), ("Overlapping", "none"), ("Revoking", "revoke")]


def test_propagation_waits_for_the_new_version_then_rolls_back_after_the_deadline() -> None:
    record = RotationRecord("Propagating", started_at=T0, new={"version": "2"})
    assert decide(spec(), record, seen(synced_version="1"), due_at=T0).action == "sync"
    late = seen(synced_version="1", now=T0 + datetime.timedelta(hours=2))
    assert decide(spec(), record, late, due_at=T0).next == "RollingBack"
    assert decide(spec(rollback=False), record, late, due_at=T0).next == "Failed"


def test_old_value_is_never_revoked_while_readers_are_not_on_the_new_one() -> None:
    record = RotationRecord("Verifying", started_at=T0, phase_since=T0, new={"version": "2"})
    waiting = decide(spec(), record, seen(rollout_done=False, now=T0 + datetime.timedelta(minutes=1)), due_at=T0)
    assert waiting.next is None and waiting.action == "none"
    timeout = decide(spec(), record, seen(rollout_done=False, now=T0 + datetime.timedelta(minutes=6)), due_at=T0)
    assert timeout.next == "RollingBack"


def test_overlap_window_is_honoured() -> None:
    record = RotationRecord("Overlapping", started_at=T0, phase_since=T0)
    d = decide(spec(), record, seen(now=T0 + datetime.timedelta(minutes=4)), due_at=T0)
    assert d.next is None and d.wait == 30.0  # re-checks at least every 30 s
    assert decide(spec(), record, seen(now=T0 + datetime.timedelta(minutes=10)), due_at=T0).next == "Revoking"


def test_dry_run_walks_phases_without_waiting() -> None:
    record = RotationRecord("Propagating", started_at=T0, new={"version": "dry-run"})
    d = decide(spec(dryRun=True), record, seen(synced_version="1"), due_at=T0)
    assert d.next == "Verifying" and "would" in d.message


def test_bad_specs_are_explained() -> None:
    # The model refuses a bad cron expression itself now; validate() still catches one made without it.
    bad_cron = spec().model_copy(update={"schedule": Schedule.model_construct(cron="61 * * * *")})
    assert "cron" in (validate(bad_cron) or "")
    assert "overlap.window" in (validate(spec(schedule={"interval": "5m"}, overlap={"window": "10m"})) or "")
    assert "staticRoles" in (validate(spec(strategy="overlap", generator={"type": "backend"})) or "")
    assert validate(spec()) is None


def test_schedule_interval_cron_and_window() -> None:
    assert next_due(spec(), None, T0) == T0 + datetime.timedelta(hours=720)
    cron = spec(schedule={"cron": "0 3 * * *"})
    assert next_due(cron, T0, T0) == datetime.datetime(2026, 11, 29, 3, 0, tzinfo=datetime.UTC)
    windowed = spec(schedule={"interval": "720h", "window": {"start": "02:00", "duration": "2h"}})
    assert in_window(windowed, T0.replace(hour=3)) and not in_window(windowed, T0.replace(hour=5))


def test_generated_passwords_use_every_class_and_differ() -> None:
    g = Generator(length=24, classes=["lower", "upper", "digits", "symbols"])
    a, b = generate(g), generate(g)
    assert a != b and len(a) == 24
    assert any(c.islower() for c in a) and any(c.isupper() for c in a) and any(c.isdigit() for c in a)
    assert len(generate(Generator(type="bytes", length=16, encoding="hex"))) == 32


def test_the_record_and_source_readiness_are_read_from_status() -> None:
    status = {"phase": "Verifying", "rotation": {"startedAt": "2026-11-28T12:00:00Z", "phaseSince": "bad",
                                                 "old": {"version": "1"}, "new": {"version": "2"}}}
    assert record_of(status) == RotationRecord("Verifying", T0, None, {"version": "2"}, {"version": "1"})
    assert record_of({}) == RotationRecord(None)
    assert source_ready({"conditions": [{"type": "Ready", "status": "True"}]})
    assert source_ready({"conditions": [{"type": "Ready", "status": "False", "reason": "Denylisted"}]})
    assert not source_ready({"conditions": [{"type": "Ready", "status": "False", "reason": "NotFound"}]})


def test_due_after_the_last_rotation_the_retry_time_or_when_the_strategy_needs_it() -> None:
    s = spec()
    assert due_at(s, {}, T0) == T0 + datetime.timedelta(hours=720)
    assert due_at(s, {"lastRotationTime": "2026-11-28T13:00:00Z"}, T0) == T0 + datetime.timedelta(hours=721)
    failed = {"phase": "RolledBack", "nextRotationTime": "2026-11-28T14:00:00Z"}
    assert due_at(s, failed, T0) == T0 + datetime.timedelta(hours=2)
    assert due_at(s, {"phase": "Complete"}, T0, T0 + datetime.timedelta(hours=1)) == T0 + datetime.timedelta(hours=1)
    assert due_at(s, {"phase": "Publishing"}, T0, T0) == T0 + datetime.timedelta(hours=720)  # not mid-rotation


def test_a_lease_is_replaced_while_it_can_still_outlive_twice_the_overlap_window() -> None:
    s = spec(strategy="dynamic", dynamic={"role": "app"})  # overlap window 10m
    assert lease_due(s, {}, T0) == T0  # none held yet
    held = {"leaseExpires": "2026-11-28T13:00:00Z", "leaseMaxExpires": "2026-11-28T12:30:00Z"}
    assert lease_due(s, held, T0) == NEVER
    assert lease_due(s, held, T0 + datetime.timedelta(minutes=10)) == T0 + datetime.timedelta(minutes=10)


def test_a_rollout_failure_counts_only_when_it_happened_since_the_rotation_started() -> None:
    def deployment(at: str) -> dict[str, Any]:
        return {"status": {"conditions": [{"type": "Progressing", "status": "False",
                                           "reason": "ProgressDeadlineExceeded", "lastTransitionTime": at}]}}

    assert rollout_failed("Deployment", deployment("2026-11-28T12:00:00Z"), T0)
    assert not rollout_failed("Deployment", deployment("2026-11-28T11:59:59Z"), T0)
    assert rollout_failed("Deployment", deployment("2026-11-28T11:59:59Z"))  # without SINCE: any
    assert not rollout_failed("StatefulSet", deployment("2026-11-28T12:00:00Z"), T0)
    assert not rollout_failed("Deployment", {"status": {}}, T0)


def test_transitions_record_a_step_and_finish_with_counters_and_the_next_time() -> None:
    s = spec()
    rotation = start({"version": "1"}, T0, manual=True, rotation_id="r1")
    assert rotation["trigger"] == "manual" and rotation["startedAt"] == "2026-11-28T12:00:00Z"
    pending = transition(s, {"handledRotateNow": "x"}, rotation, "Pending", "manual rotation", T0, T0)
    assert pending.patch["handledRotateNow"] == "x" and pending.reason == "Pending" and pending.ok
    assert pending.patch["rotation"]["steps"] == [{"phase": "Pending", "time": "2026-11-28T12:00:00Z",
                                                   "message": "manual rotation"}]
    assert rotation["steps"] == []  # the input is not changed
    done = transition(s, {"rotations": 2}, {**rotation, "new": {"version": "2"}}, "Complete", "old value revoked",
                      T0, T0)
    assert done.patch["active"] == {"version": "2"} and done.patch["rotations"] == 3
    assert done.outcome == "complete" and done.event and done.reason == "Rotated"
    assert done.patch["nextRotationTime"] == "2026-12-28T12:00:00Z"
    dry = transition(spec(dryRun=True), {}, rotation, "Complete", "old value revoked", T0, T0)
    assert "active" not in dry.patch and dry.outcome == "dry_run" and not dry.event
    assert dry.message == "old value revoked (dry run: nothing changed)"
    why = transition(s, {}, rotation, "RollingBack", "consumers did not become Ready", T0, T0)
    back = transition(s, {"lastRotationTime": "2026-11-01T00:00:00Z"}, why.patch["rotation"], "RolledBack",
                      "rolled back to the old value", T0, T0)
    assert back.message == "rolled back to the old value: consumers did not become Ready" and not back.ok
    assert back.outcome == "rolled_back" and back.rollback_cause == "verify" and back.reason == "RolledBack"
    assert back.patch["lastRotationTime"] == "2026-11-01T00:00:00Z"
    assert back.patch["nextRotationTime"] == "2026-11-28T13:00:00Z"
    steps = [{"phase": "Pending", "time": "t", "message": str(n)} for n in range(30)]
    assert len(transition(s, {}, {"steps": steps}, "Publishing", "", T0, T0).patch["rotation"]["steps"]) == 25


# -- fencing and clocks ---------------------------------------------------------------------------------


def test_the_status_mark_changes_with_a_step_or_the_ready_condition_not_with_a_renewal() -> None:
    status: dict[str, Any] = {"phase": "Overlapping", "rotation": {"id": "r1", "phaseSince": "t", "steps": [{}]},
                              "conditions": [{"type": "Ready", "status": "True", "reason": "Overlapping",
                                              "message": "overlap window"}], "active": {"leaseExpires": "a"}}
    mark = status_mark(status)
    assert status_mark({**status, "active": {"leaseExpires": "b"}}) == mark
    assert status_mark({**status, "phase": "Revoking"}) != mark
    claimed = [{**status["conditions"][0], "message": claim_message("Overlapping", T0)}]
    assert status_mark({**status, "conditions": claimed}) != mark


def test_a_rotation_in_progress_is_carried_on_by_its_writer_and_taken_over_only_after_a_quiet_while() -> None:
    quiet = datetime.timedelta(seconds=3)
    assert turn(None, False, quiet) == ("act", 0.0)  # idle: the guarded start decides
    assert turn("Complete", False, quiet) == ("act", 0.0)
    assert turn("Publishing", True, quiet) == ("act", 0.0)
    assert turn("Publishing", False, quiet) == ("wait", 7.0)
    assert turn("Publishing", False, TAKEOVER) == ("claim", 0.0)


def test_the_api_servers_clock_is_read_from_managed_fields_and_rollout_failures_timed_on_it() -> None:
    body = {"metadata": {"managedFields": [{"time": "2026-11-28T12:10:00Z"}, {"time": "2026-11-28T12:20:00Z"},
                                           {"manager": "no time"}]}}
    assert stamped_at(body) == T0 + datetime.timedelta(minutes=20)
    assert stamped_at({"metadata": {}}) is None
    ahead = datetime.timedelta(minutes=10)
    assert failure_since(T0, ahead) == T0 + ahead - datetime.timedelta(seconds=2)


def test_leases_renew_at_their_fraction_until_their_max_and_are_replaced_before_it() -> None:
    s = spec(strategy="dynamic", dynamic={"role": "app", "renewFraction": 0.5}, overlap={"window": "2s"})
    held = {"lease": "sha256:1", "version": "2", "leaseExpires": "2026-11-28T12:00:10Z",
            "leaseMaxExpires": "2026-11-28T12:00:40Z", "leaseTtl": "10"}
    assert renew_at(s, held) == T0 + datetime.timedelta(seconds=5)
    assert renew_at(s, {**held, "leaseExpires": held["leaseMaxExpires"]}) == NEVER  # cannot go further
    assert renew_at(s, {**held, "leaseTtl": ""}) < T0  # written before renewals were: renew at once
    # Replaced 10 s before the max at least (twice the window would be 4 s), and at once when it ran out.
    renewed = {**held, "leaseExpires": "2026-11-28T12:00:35Z"}
    assert lease_due(s, renewed, T0 + datetime.timedelta(seconds=29)) == NEVER
    assert lease_due(s, renewed, T0 + datetime.timedelta(seconds=30)) == T0 + datetime.timedelta(seconds=30)
    assert lease_due(s, {**held, "leaseExpires": "2026-11-28T11:59:59Z"}, T0) == T0


def test_the_leases_status_holds_are_the_active_one_and_a_published_new_one() -> None:
    active = {"version": "2", "lease": "sha256:a"}
    new = {"version": "3", "lease": "sha256:b"}
    assert held_leases({"phase": "Complete", "active": active}) == {"active": active}
    assert held_leases({"phase": "Publishing", "active": active, "rotation": {"new": new}}) == {"active": active}
    assert held_leases({"phase": "Overlapping", "active": active, "rotation": {"new": new}}) == {
        "active": active, "new": new}
    assert held_leases({"phase": "Complete", "active": new, "rotation": {"new": new}}) == {"active": new}
    assert held_leases({"phase": "Verifying", "active": {"version": "1"}}) == {}  # no lease: not dynamic


def test_only_versions_marked_with_the_rotation_id_are_its_own() -> None:
    marks = {rotation_key("3"): "r1", lease_key("3"): "database/creds/app/x", rotation_key("1"): "r0", "other": "y"}
    assert written_by(marks, "3", "r1") and not written_by(marks, "3", "r2")
    assert not written_by(marks, "2", "r1") and not written_by(marks, None, "r1") and not written_by(marks, "3", "")
    assert next_version("3") == "4" and next_version(None) == "1" and next_version("0") == "1"
    assert lease_ids(marks) == {"3": "database/creds/app/x"}
    assert stale_marks(marks, ["3"]) == {rotation_key("1"): ""}
