"""rotor_transit_key_version_created_timestamp_seconds: when a transit policy's latest key version was
made (from status.active), absent for other policies."""

from __future__ import annotations

from rotor.observability import metrics

from .test_object_metrics import Clock, Obj, iso, scrape, value


def test_a_transit_policy_shows_when_its_latest_key_version_was_made_and_others_show_nothing() -> None:
    policies = {("a", "keys"): Obj("a", "keys", {"active": {"key": "transit/orders", "keyVersion": "3",
                                                             "keyVersionCreated": iso(-3600)}}),
                ("a", "kv"): Obj("a", "kv", {"active": {"version": "4"}})}
    registry = scrape({}, policies, Clock(0))
    assert value(registry, metrics.KEY_VERSION_CREATED, "a", "keys") == iso_unix(-3600)
    assert value(registry, metrics.KEY_VERSION_CREATED, "a", "kv") is None


def iso_unix(offset: float) -> float:
    from .test_object_metrics import T0
    return T0.timestamp() + offset
