"""planning.certificates: when a certificate is due, when it renews, what the Secret holds."""

from __future__ import annotations

import datetime

from rotor.api import keys
from rotor.planning import times
from rotor.planning.certificates import (
    capped,
    certificate_values,
    expiry_samples,
    plan_certificate,
    policy_due,
    renewal_time,
    tls_data,
)

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


def status(renew_in: float, *, generation: int = 1, ready: str = "True") -> dict[str, object]:
    return {"observedGeneration": generation, "conditions": [{"type": keys.READY, "status": ready}],
            "certificate": {"serial": "aa:bb", "renewAt": times.iso(NOW + datetime.timedelta(seconds=renew_in))}}


def test_not_due_waits_until_renew_at_and_due_when_past() -> None:
    waiting = plan_certificate(status(600), generation=1, secret_intact=True, now=NOW)
    assert not waiting.due and waiting.wait == 600
    assert plan_certificate(status(-1), generation=1, secret_intact=True, now=NOW).due


def test_issued_at_once_for_no_certificate_a_spec_change_a_failure_or_a_changed_secret() -> None:
    assert plan_certificate({}, generation=1, secret_intact=False, now=NOW).due
    assert plan_certificate(status(600), generation=2, secret_intact=True, now=NOW).why == "the spec changed"
    assert plan_certificate(status(600, ready="False"), generation=1, secret_intact=True, now=NOW).due
    assert plan_certificate(status(600), generation=1, secret_intact=False, now=NOW).due


def test_renewal_comes_at_the_fraction_or_a_little_earlier_never_later() -> None:
    after = NOW + datetime.timedelta(seconds=3000)
    assert renewal_time(NOW, after, 2 / 3, 0.0) == NOW + datetime.timedelta(seconds=2000)
    jittered = renewal_time(NOW, after, 2 / 3, 0.99)
    assert NOW + datetime.timedelta(seconds=1840) < jittered < NOW + datetime.timedelta(seconds=2000)
    assert renewal_time(NOW, NOW, 0.5, 0.0) == NOW + datetime.timedelta(seconds=1)  # never a loop


def test_tls_data_puts_the_leaf_first_then_the_chain_and_the_root_in_ca_crt() -> None:
    data = tls_data("LEAF", ["INTERMEDIATE", "ROOT"], "KEY", "INTERMEDIATE")
    assert data == {"tls.crt": b"LEAF\nINTERMEDIATE\nROOT\n", "tls.key": b"KEY\n", "ca.crt": b"ROOT\n"}
    assert tls_data("LEAF", [], "KEY", "CA")["ca.crt"] == b"CA\n"


def governed(renew_in: float, life_left: float, rotation: str = "r1") -> dict[str, object]:
    """status of a source whose renewals a RotationPolicy drives (its last rotation ROTATION)."""
    found = status(renew_in)
    found["certificate"] = {**found["certificate"],  # type: ignore[dict-item]
                            "notAfter": times.iso(NOW + datetime.timedelta(seconds=life_left)), "rotation": rotation}
    return found


def test_a_policy_request_issues_once_per_rotation() -> None:
    asked = plan_certificate(governed(600, 1200), generation=1, secret_intact=True, now=NOW, requested="r2")
    assert asked.due and "r2" in asked.why
    assert not plan_certificate(governed(600, 1200), generation=1, secret_intact=True, now=NOW, requested="r1").due


def test_a_source_its_policy_renews_waits_past_renew_at_until_the_backstop() -> None:
    # renewAt passed 60 s ago, notAfter in 600 s: the backstop is halfway, in 270 s.
    waiting = plan_certificate(governed(-60, 600), generation=1, secret_intact=True, now=NOW)
    assert not waiting.due and waiting.wait == 270
    overdue = plan_certificate(governed(-400, 200), generation=1, secret_intact=True, now=NOW)
    assert overdue.due and "backstop" in overdue.why


def test_the_policy_is_due_a_little_before_renew_at_and_values_carry_no_key() -> None:
    certificate = {"serial": "aa:bb", "renewAt": times.iso(NOW), "notAfter": times.iso(NOW + datetime.timedelta(
        seconds=1000)), "rotation": "r1"}
    assert policy_due(certificate) == NOW - datetime.timedelta(seconds=100)
    long_lived = {**certificate, "notAfter": times.iso(NOW + datetime.timedelta(days=30))}
    assert policy_due(long_lived) == NOW - datetime.timedelta(minutes=5)
    assert policy_due({}) is None
    assert certificate_values(certificate) == {"version": "aa:bb", "serial": "aa:bb", "renewAt": times.iso(NOW),
                                               "notAfter": certificate["notAfter"]}


def test_expiry_samples_count_down_to_not_after_and_up_past_renew_at() -> None:
    certificate = {"renewAt": times.iso(NOW - datetime.timedelta(seconds=30)),
                   "notAfter": times.iso(NOW + datetime.timedelta(seconds=90))}
    assert expiry_samples(certificate, NOW) == (90.0, 30.0)
    assert expiry_samples({}, NOW) is None


def test_a_ttl_the_role_capped_is_seen_and_not_retried_until_the_spec_changes() -> None:
    hour = datetime.timedelta(hours=1)
    assert capped(NOW, NOW + hour, 2 * hour) and not capped(NOW, NOW + hour - datetime.timedelta(seconds=5), hour)
    refused = {**status(600, ready="False")}
    refused["conditions"] = [{"type": keys.READY, "status": "False", "message": "spec.vault.pki.ttl: 2h is longer"}]
    waiting = plan_certificate(refused, generation=1, secret_intact=True, now=NOW)
    assert not waiting.due and waiting.wait == 3600
    assert plan_certificate(refused, generation=2, secret_intact=True, now=NOW).why == "the spec changed"
    first = {"observedGeneration": 1, "conditions": refused["conditions"]}  # never issued one: the same
    assert not plan_certificate(first, generation=1, secret_intact=False, now=NOW).due
