"""planning.sync_status: a SecretSource's status, Events, drift and retry decisions from plain data."""

from __future__ import annotations

import dataclasses
import datetime

from rotor.api import keys
from rotor.planning.hashing import data_hmac
from rotor.planning.sync import ObservedSecret, SyncPlan
from rotor.planning.sync_status import (
    MAX_INTERVAL,
    RETRY_CAP,
    Bucket,
    drifted,
    effective_interval,
    interval_notice,
    next_delay,
    ready_label,
    result_label,
    still_synced,
    sync_status,
    write_failure,
)

KEY = b"k" * 32
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
CREATED = SyncPlan("create", "db", message="created Secret db", data_hmac="sha256:a", version="1")
UNCHANGED = SyncPlan("none", "db", message="up to date", data_hmac="sha256:a", version="1")
DOWN = SyncPlan("fail", "db", keys.BACKEND_UNAVAILABLE, "vault sealed")


def test_a_first_sync_writes_every_field_and_posts_synced() -> None:
    planned = sync_status({}, CREATED, generation=3, now=T0, delay=60)
    assert planned.patch is not None
    assert planned.patch["dataHmac"] == "sha256:a" and planned.patch["syncedVersion"] == "1"
    assert planned.patch["lastChangeTime"] == planned.patch["lastSyncTime"] == "2026-01-01T00:00:00Z"
    assert planned.patch["nextSyncTime"] == "2026-01-01T00:01:00Z"
    assert planned.patch["observedGeneration"] == 3 and planned.patch["targetSecret"] == "db"
    assert ready_label(planned.patch) == ("True", keys.SYNCED)
    assert planned.event is not None and (planned.event.type, planned.event.reason) == ("Normal", keys.SYNCED)
    assert planned.event.message == "created Secret db (version 1)"


def test_an_unchanged_refresh_writes_nothing() -> None:
    first = sync_status({}, CREATED, generation=1, now=T0, delay=60).patch
    assert first is not None
    later = sync_status(first, UNCHANGED, generation=1, now=T0 + datetime.timedelta(hours=1), delay=60)
    assert later.patch is None and later.event is None


def test_still_synced_agrees_with_sync_status() -> None:
    """The unchanged refresh's shortcut says "nothing to write" exactly when sync_status plans nothing."""
    first = sync_status({}, CREATED, generation=1, now=T0, delay=60).patch
    assert first is not None
    later = T0 + datetime.timedelta(hours=1)
    cases = [
        (first, UNCHANGED, 1, ""),
        (first, UNCHANGED, 2, ""),  # a new generation
        (first, UNCHANGED, 1, interval_notice(5.0, 10.0)),  # a notice status does not say yet
        (first, SyncPlan("none", "db", data_hmac="sha256:b", version="1"), 1, ""),  # another digest
        (first, SyncPlan("none", "db", data_hmac="sha256:a", version="2"), 1, ""),  # another version
        (first, SyncPlan("none", "other", data_hmac="sha256:a", version="1"), 1, ""),  # another target
        (first, CREATED, 1, ""),
        (first, DOWN, 1, ""),
        ({k: v for k, v in first.items() if k != "lastSyncTime"}, UNCHANGED, 1, ""),
        ({**first, "conditions": [*first["conditions"], *first["conditions"]]}, UNCHANGED, 1, ""),
        ({**first, "conditions": [{**first["conditions"][0], "status": "False"}]}, UNCHANGED, 1, ""),
    ]
    for old, plan, generation, notice in cases:
        planned = sync_status(old, plan, generation=generation, now=later, delay=60, notice=notice)
        nothing = planned.patch is None and planned.event is None
        assert still_synced(old, plan, generation=generation, notice=notice) == nothing, (plan, generation, notice)
    assert still_synced(first, UNCHANGED, generation=1)


def test_a_failure_is_reported_once_and_keeps_the_last_good_digest() -> None:
    good = sync_status({}, CREATED, generation=1, now=T0, delay=60).patch
    assert good is not None
    failed = sync_status(good, DOWN, generation=1, now=T0, delay=5)
    assert failed.patch is not None and "dataHmac" not in failed.patch and "lastSyncTime" not in failed.patch
    assert ready_label(failed.patch) == ("False", keys.BACKEND_UNAVAILABLE)
    assert failed.event is not None
    assert (failed.event.type, failed.event.reason) == ("Warning", keys.BACKEND_UNAVAILABLE)
    again = sync_status({**good, **failed.patch}, DOWN, generation=1, now=T0, delay=10)
    assert again.patch is None and again.event is None
    transition = failed.patch["conditions"][0]["lastTransitionTime"]
    assert transition == "2026-01-01T00:00:00Z"


def test_results_and_delays() -> None:
    assert [result_label(p) for p in (CREATED, UNCHANGED, DOWN)] == ["changed", "unchanged", keys.BACKEND_UNAVAILABLE]
    assert next_delay(UNCHANGED, 0, 0.5, interval=3600, jitter=0.1) == 3420
    assert next_delay(DOWN, 1, 0.0, interval=3600, jitter=0.1) < 5
    assert next_delay(DOWN, 30, 0.99, interval=10, jitter=0.1) <= RETRY_CAP


def test_write_failures_name_their_reason() -> None:
    assert write_failure("db", 403, "Forbidden", "nope").reason == keys.PERMISSION_DENIED
    assert write_failure("db", 422, "Invalid", "bad").reason == keys.INVALID_SPEC
    failed = write_failure("db", 500, "InternalError", "")
    assert failed.reason == keys.KUBERNETES_ERROR and failed.message == "writing Secret db: InternalError"


def test_drift_is_a_change_to_rotors_keys_or_digest() -> None:
    expected = data_hmac(KEY, {"password": b"pw"}, "Opaque")
    ours = ObservedSecret("db", "Opaque", {"password": b"pw", "theirs": b"x"},
                          annotations={keys.MANAGED_KEYS: "password", keys.DATA_HMAC: expected})
    assert not drifted(ours, expected, KEY, "Opaque")
    assert drifted(dataclasses.replace(ours, data={"password": b"evil"}), expected, KEY, "Opaque")
    assert drifted(dataclasses.replace(ours, annotations={keys.MANAGED_KEYS: "password"}),
                   expected, KEY, "Opaque")
    assert drifted(None, expected, KEY, "Opaque")  # deleted
    assert not drifted(ours, None, KEY, "Opaque")  # never synced: nothing to compare with


def test_a_failure_keeps_the_secret_rotor_last_wrote_as_target() -> None:
    good = sync_status({}, CREATED, generation=1, now=T0, delay=60).patch
    assert good is not None
    renamed = SyncPlan("fail", "db-v2", keys.CONFLICT, "Secret db-v2 exists")
    failed = sync_status(good, renamed, generation=2, now=T0, delay=5).patch
    assert failed is not None and failed["targetSecret"] == "db"
    moved = sync_status({**good, **failed}, SyncPlan("create", "db-v2", data_hmac="sha256:a", version="1"),
                        generation=2, now=T0, delay=60).patch
    assert moved is not None and moved["targetSecret"] == "db-v2"


def test_the_minimum_interval_and_its_notice() -> None:
    assert next_delay(UNCHANGED, 0, 0.0, interval=1.0, jitter=0.5, minimum=10.0) == 10.0
    assert next_delay(UNCHANGED, 0, 0.0, interval=3600.0, jitter=0.1, minimum=10.0) == 3600.0
    assert effective_interval(1e15, 10.0) == MAX_INTERVAL
    assert interval_notice(5.0, 10.0).startswith("spec.refresh.interval is below") and interval_notice(10, 10) == ""
    planned = sync_status({}, CREATED, generation=1, now=T0, delay=10, notice=interval_notice(5.0, 10.0)).patch
    assert planned is not None and "minimum of 10s" in planned["conditions"][0]["message"]


def test_the_early_sync_bucket() -> None:
    bucket = Bucket(3.0, 0.0)
    assert [bucket.take(0.0, rate=10.0, burst=3) for _ in range(4)] == [0.0, 0.0, 0.0, 10.0]
    assert bucket.take(5.0, rate=10.0, burst=3) == 5.0
    assert bucket.take(10.0, rate=10.0, burst=3) == 0.0
    bucket.take(1000.0, rate=10.0, burst=3)
    assert bucket.tokens == 2.0  # refilled to the burst, not beyond
