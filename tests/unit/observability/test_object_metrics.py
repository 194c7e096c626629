"""Per-object metrics (metrics_secret_names): computed at scrape from plain in-memory state."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rotor.observability import metrics
from rotor.observability.metrics import OBJECT_METRICS, ObjectMetrics, track_objects

T0 = datetime.datetime(2026, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)


def iso(offset: float) -> str:
    return (T0 + datetime.timedelta(seconds=offset)).isoformat().replace("+00:00", "Z")


@dataclass
class Obj:
    namespace: str
    name: str
    status: dict[str, Any] = field(default_factory=dict)


class Clock:
    def __init__(self, at: float) -> None:
        self.now = T0.timestamp() + at

    def __call__(self) -> float:
        return self.now


def scrape(sources: dict[Any, Obj], policies: dict[Any, Obj], clock: Clock) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ObjectMetrics(sources, policies, clock))
    return registry


def value(registry: CollectorRegistry, metric: metrics.ObjectMetric, namespace: str, name: str) -> float | None:
    return registry.get_sample_value(metric.name, {"namespace": namespace, "name": name})


def test_secret_age_counts_from_the_last_change_and_grows_between_syncs() -> None:
    sources = {("a", "db"): Obj("a", "db", {"lastChangeTime": iso(0), "lastSyncTime": iso(50)})}
    clock = Clock(100)
    registry = scrape(sources, {}, clock)
    assert value(registry, metrics.SECRET_AGE, "a", "db") == 100.0
    clock.now += 30  # no sync in between: the age is computed at scrape time
    assert value(registry, metrics.SECRET_AGE, "a", "db") == 130.0


def test_secret_age_falls_back_to_the_last_sync_and_is_absent_before_the_first() -> None:
    sources = {("a", "old"): Obj("a", "old", {"lastSyncTime": iso(40)}),  # status from before lastChangeTime
               ("a", "new"): Obj("a", "new", {"conditions": [{"type": "Ready", "status": "False"}]}),
               ("a", "bad"): Obj("a", "bad", {"lastChangeTime": "yesterday"})}
    registry = scrape(sources, {}, Clock(100))
    assert value(registry, metrics.SECRET_AGE, "a", "old") == 60.0
    assert value(registry, metrics.SECRET_AGE, "a", "new") is None
    assert value(registry, metrics.SECRET_AGE, "a", "bad") is None


def test_secret_age_is_never_negative() -> None:
    registry = scrape({("a", "db"): Obj("a", "db", {"lastChangeTime": iso(10)})}, {}, Clock(5))  # clock skew
    assert value(registry, metrics.SECRET_AGE, "a", "db") == 0.0


def test_policy_times_and_the_lease_expiry_come_from_status() -> None:
    policies = {
        ("a", "dyn"): Obj("a", "dyn", {"lastRotationTime": iso(0), "nextRotationTime": iso(3600),
                                        "active": {"version": "3", "lease": "sha256:abc",
                                                   "leaseExpires": iso(1800), "leaseMaxExpires": iso(7200)}}),
        ("b", "new"): Obj("b", "new", {"nextRotationTime": iso(60)}),  # never rotated
        ("b", "kv"): Obj("b", "kv", {"active": {"version": "2"}}),  # no lease: no expiry series
    }
    registry = scrape({}, policies, Clock(100))
    assert value(registry, metrics.LAST_ROTATION, "a", "dyn") == T0.timestamp()
    assert value(registry, metrics.NEXT_ROTATION, "a", "dyn") == T0.timestamp() + 3600
    assert value(registry, metrics.LEASE_EXPIRY, "a", "dyn") == T0.timestamp() + 1800
    assert value(registry, metrics.LAST_ROTATION, "b", "new") is None
    assert value(registry, metrics.NEXT_ROTATION, "b", "new") == T0.timestamp() + 60
    assert value(registry, metrics.LEASE_EXPIRY, "b", "kv") is None
    assert value(registry, metrics.SECRET_AGE, "a", "dyn") is None  # policies have no secret age


def test_deleted_objects_disappear_at_the_next_scrape() -> None:
    sources = {("a", "db"): Obj("a", "db", {"lastChangeTime": iso(0)})}
    policies = {("a", "p"): Obj("a", "p", {"nextRotationTime": iso(0)})}
    registry = scrape(sources, policies, Clock(10))
    assert value(registry, metrics.SECRET_AGE, "a", "db") == 10.0
    del sources[("a", "db")]
    del policies[("a", "p")]
    text = generate_latest(registry).decode()
    assert 'name="db"' not in text and 'name="p"' not in text
    assert all(f"# TYPE {m.name} gauge" in text for m in OBJECT_METRICS)  # families stay described


def test_status_is_read_live_not_copied() -> None:
    source = Obj("a", "db", {"lastChangeTime": iso(0)})
    registry = scrape({("a", "db"): source}, {}, Clock(100))
    source.status = {"lastChangeTime": iso(90)}  # a new value was synced (status is replaced, as secretsync does)
    assert value(registry, metrics.SECRET_AGE, "a", "db") == 10.0


@pytest.fixture
def untracked() -> Iterator[None]:
    yield
    track_objects({}, {}, enabled=False)  # leave the process-wide registry as it was


def names_in(registry: CollectorRegistry) -> set[str]:
    return {sample.name for family in registry.collect() for sample in family.samples}


@pytest.mark.usefixtures("untracked")
def test_track_objects_registers_only_when_enabled_and_replaces_an_earlier_start() -> None:
    sources = {("a", "db"): Obj("a", "db", {"lastChangeTime": iso(0)})}
    track_objects(sources, {}, enabled=False)
    assert metrics.SECRET_AGE.name not in names_in(metrics.REGISTRY)
    track_objects(sources, {}, enabled=True)
    assert metrics.REGISTRY.get_sample_value(metrics.SECRET_AGE.name, {"namespace": "a", "name": "db"})
    # A second start in the same process (tests restart the operator): no duplicate registration.
    track_objects({("b", "x"): Obj("b", "x", {"lastChangeTime": iso(0)})}, {}, enabled=True)
    assert metrics.REGISTRY.get_sample_value(metrics.SECRET_AGE.name, {"namespace": "a", "name": "db"}) is None
    assert metrics.REGISTRY.get_sample_value(metrics.SECRET_AGE.name, {"namespace": "b", "name": "x"})
    track_objects(sources, {}, enabled=False)  # and a start with the setting off exports none
    assert not {m.name for m in OBJECT_METRICS} & names_in(metrics.REGISTRY)


def test_certificate_expiry_counts_down_and_overdue_counts_up_past_renew_at_without_the_serial() -> None:
    sources = {("a", "tls"): Obj("a", "tls", {"certificate": {"serial": "4a:1f", "renewAt": iso(200),
                                                               "notAfter": iso(300)}}),
               ("a", "kv"): Obj("a", "kv", {"lastChangeTime": iso(0)})}
    clock = Clock(100)
    registry = scrape(sources, {}, clock)
    assert value(registry, metrics.CERTIFICATE_EXPIRY, "a", "tls") == 200.0
    assert value(registry, metrics.CERTIFICATE_OVERDUE, "a", "tls") == 0.0
    clock.now += 250  # not renewed: past renewAt, then past notAfter
    assert value(registry, metrics.CERTIFICATE_EXPIRY, "a", "tls") == -50.0
    assert value(registry, metrics.CERTIFICATE_OVERDUE, "a", "tls") == 150.0
    assert value(registry, metrics.CERTIFICATE_EXPIRY, "a", "kv") is None
    assert "4a:1f" not in generate_latest(registry).decode()
