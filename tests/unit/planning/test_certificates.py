"""planning.certificates: when a certificate is due, when it renews, what the Secret holds."""

from __future__ import annotations

import datetime

from rotor.api import keys
from rotor.planning import times
from rotor.planning.certificates import plan_certificate, renewal_time, tls_data

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
