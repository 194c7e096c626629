"""`rotor status` rendering: state, conditions, rotation steps and incident timelines, never a value."""

from __future__ import annotations

import copy
import datetime
import re
from typing import Any

from rotor.planning.status_view import render, summary

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LEAKED = "hunter2-never-printed"


def ready(status: str, reason: str, message: str = "", at: str = "2026-01-01T11:55:00Z") -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message, "lastTransitionTime": at}


SOURCE: dict[str, Any] = {
    "metadata": {"name": "db", "namespace": "team-a", "generation": 2,
                 "annotations": {"note": LEAKED}},
    "spec": {"provider": "vault", "serviceAccountName": "app",
             "vault": {"connection": "default", "mount": "secret", "path": "team-a/db", "role": "team-a-app"},
             "target": {"name": "db-credentials", "template": {"data": {"url": f"postgres://app:{LEAKED}@db/app"}}}},
    "status": {"observedGeneration": 2, "syncedVersion": "7", "dataHmac": "sha256:9f2c0d1e",
               "targetSecret": "db-credentials", "lastSyncTime": "2026-01-01T11:58:00Z",
               "nextSyncTime": "2026-01-01T12:58:00Z", "consumers": {"current": 3, "stale": 1},
               "conditions": [ready("True", "Synced", "synced version 7 into Secret db-credentials")]},
}
POLICY: dict[str, Any] = {
    "metadata": {"name": "db", "namespace": "team-a", "generation": 3},
    "spec": {"secretSourceRef": {"name": "db"}, "strategy": "overlap",
             "schedule": {"interval": "720h", "window": {"start": "02:00", "duration": "2h"}},
             "overlap": {"window": "15m", "staticRoles": ["db-blue", "db-green"]}},
    "status": {"observedGeneration": 2, "phase": "Overlapping", "rotations": 4,
               "nextRotationTime": "2026-01-31T02:00:00Z", "active": {"version": "5", "role": "db-blue"},
               "rotation": {"id": "r-20260101", "trigger": "schedule", "startedAt": "2026-01-01T11:50:00Z",
                            "phaseSince": "2026-01-01T11:56:00Z", "old": {"version": "4", "role": "db-green"},
                            "new": {"version": "5", "role": "db-blue"},
                            "steps": [{"phase": "Publishing", "time": "2026-01-01T11:50:01Z", "message": "wrote v5"},
                                      {"phase": "Verifying", "time": "2026-01-01T11:51:00Z", "message": "3 rolling"},
                                      {"phase": "Overlapping", "time": "2026-01-01T11:56:00Z", "message": "12:11"}]},
               "conditions": [ready("False", "InProgress", "rotation in progress", "2026-01-01T11:50:00Z")]},
}
INCIDENT: dict[str, Any] = {
    "metadata": {"name": "db-leak-x7k2q", "namespace": "team-a", "generation": 1},
    "spec": {"secretSourceRef": {"name": "db"}, "severity": "high",
             "exposure": {"where": "ci-logs", "reference": "https://ci.example/build/1234"}},
    "status": {"observedGeneration": 1, "phase": "Prevented", "source": "db", "order": "afterRotation",
               "exposedVersion": "4", "denylist": ["sha256:aa", "sha256:bb"],
               "timestamps": {"detected": "2026-01-01T11:00:00Z", "contained": "2026-01-01T11:00:00.412Z",
                              "rotated": "2026-01-01T11:00:40Z"},
               "blastRadius": {"backend": "vault:default/secret/team-a/db", "versions": ["4"], "keys": ["password"],
                               "targetSecret": "team-a/db-credentials",
                               "consumers": [{"kind": "Deployment", "namespace": "team-a", "name": "web",
                                              "serviceAccount": "web", "via": ["env", "volume"]}],
                               "exposureWindow": {"start": "2025-12-02T02:10:00Z"}},
               "rotation": {"policy": "db-emergency", "emergency": True, "newVersion": "5"},
               "revocation": {"method": "destroyed KV version 4", "confirmed": False, "check": "version 4 readable"},
               "auditReads": [{"time": f"2026-01-01T10:{m:02d}:00Z", "operation": "read", "path": "secret/data/db",
                               "serviceAccount": "team-a/app"} for m in range(25)],
               "auditReadsTotal": 25, "recommendations": ["move to dynamic credentials"],
               "timeline": [{"time": "2026-01-01T11:00:00.000Z", "actor": "sre-alice", "action": "Reported",
                             "message": "leak of db in ci-logs"},
                            {"time": "2026-01-01T11:00:00.412Z", "actor": "rotor", "action": "Contained",
                             "message": "1 digest denylisted"}],
               "conditions": [ready("True", "Prevented", "runbook done", "2026-01-01T11:00:42Z")]},
}


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_a_secret_source_shows_its_backend_sync_times_and_ready_condition() -> None:
    text = render("SecretSource", SOURCE, now=NOW)
    assert text.splitlines()[0] == "SecretSource team-a/db"
    assert "Ready:           True (Synced)" in text
    assert "Backend:         vault:default/secret/team-a/db (role team-a-app, as ServiceAccount app)" in text
    assert "Last sync:       2026-01-01T11:58:00Z (2m ago)" in text
    assert "Next sync:       2026-01-01T12:58:00Z (in 58m)" in text
    assert "Consumers:       3 on the current version, 1 on an older one" in text
    assert "  Ready  True    Synced  5m ago  synced version 7 into Secret db-credentials" in lines(text)
    assert "\x1b[" not in text


def test_nothing_that_could_hold_a_value_is_printed() -> None:
    """Templates and annotations are the user's own text and may embed a literal: never shown, nor in json."""
    for kind, obj in (("SecretSource", SOURCE), ("RotationPolicy", POLICY), ("LeakIncident", INCIDENT)):
        assert LEAKED not in render(kind, obj, now=NOW, color=True)
    assert LEAKED not in repr(summary("SecretSource", SOURCE))
    assert summary("SecretSource", SOURCE) == {"kind": "SecretSource", "namespace": "team-a", "name": "db",
                                               "generation": 2, "status": SOURCE["status"]}


def test_a_rotation_policy_shows_its_phase_and_the_steps_of_the_rotation() -> None:
    text = render("RotationPolicy", POLICY, now=NOW)
    assert "spec changed (generation 3); Rotor has seen generation 2" in text
    assert "Strategy:        overlap (static roles db-blue / db-green, old value valid 15m after readers moved)" in text
    assert "Schedule:        every 720h, in the window 02:00 UTC for 2h" in text
    assert "Phase:           Overlapping since 2026-01-01T11:56:00Z (4m ago)" in text
    assert "Active:          role=db-blue, version=5" in text
    rotation = lines(text.split("Rotation r-20260101", 1)[1])
    assert "  Old:             role=db-green, version=4" in rotation
    steps = [line.split() for line in rotation if line.startswith("  2026-")]
    assert [step[1] for step in steps] == ["Publishing", "Verifying", "Overlapping"]


def test_a_leak_incident_shows_progress_blast_radius_audit_and_timeline() -> None:
    text = render("LeakIncident", INCIDENT, now=NOW)
    assert "Exposure:        ci-logs (https://ci.example/build/1234), severity high" in text
    assert "Denylist:        2 keyed digest(s) refused by every sync" in text
    progress = lines(text.split("\nProgress\n", 1)[1].split("\n\n", 1)[0])
    assert [row.split()[0] for row in progress[1:]] == ["detected", "contained", "rotated"]
    assert progress[2].endswith("+0.4s") and progress[3].endswith("+40.0s")
    assert "    Deployment/web  env, volume  web             -" in lines(text)
    assert "  Exposed:         from 2025-12-02T02:10:00Z to still valid" in text
    assert "  RotationPolicy:  db-emergency (emergency, created by this incident)" in text
    assert "  Revoked by:      destroyed KV version 4 (NOT confirmed)" in text
    assert "Audit: 25 read(s) in the exposure window" in text
    assert "  ... and 5 more (-o json lists them all)" in text
    assert "  - move to dynamic credentials" in text
    timeline = text.split("\nTimeline\n", 1)[1]
    assert timeline.index("Reported") < timeline.index("Contained")
    assert "sre-alice  leak of db in ci-logs" in timeline


def test_colour_only_adds_escape_codes_and_keeps_columns_aligned() -> None:
    for kind, obj in (("SecretSource", SOURCE), ("RotationPolicy", POLICY), ("LeakIncident", INCIDENT)):
        plain, coloured = render(kind, obj, now=NOW), render(kind, obj, now=NOW, color=True)
        assert coloured != plain and ANSI.sub("", coloured) == plain
    assert "\x1b[32mTrue\x1b[0m (Synced)" in render("SecretSource", SOURCE, now=NOW, color=True)
    assert "\x1b[31mFalse\x1b[0m (InProgress)" in render("RotationPolicy", POLICY, now=NOW, color=True)


def test_an_object_rotor_has_not_handled_says_so() -> None:
    fresh = copy.deepcopy(SOURCE)
    del fresh["status"]
    assert render("SecretSource", fresh, now=NOW).splitlines()[1].startswith("no status yet")


def test_a_failing_source_and_an_unreadable_time_still_render() -> None:
    broken = copy.deepcopy(SOURCE)
    broken["status"] = {"conditions": [ready("False", "BackendUnavailable", "vault: connection refused")],
                        "lastSyncTime": "not a time"}
    text = render("SecretSource", broken, now=NOW)
    assert "Ready:           False (BackendUnavailable)" in text and "Last sync:       not a time" in text
