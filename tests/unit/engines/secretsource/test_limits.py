"""SecretSync on the fakes: what one tenant may ask is bounded. A minimum refresh interval, a bucket for
syncs asked ahead of schedule (refresh-now, drift restores, spec edits), Secret-size and template limits,
and no value in any message, status or Event whatever the template does."""

from __future__ import annotations

from typing import Any

from rotor.api import keys

from .harness import NS, Cluster, vault_spec

CANARY = "canary-7f3a9e"


def started(spec: dict[str, Any] | None = None, *, min_refresh: float = 10.0, **values: str) -> Cluster:
    cluster = Cluster(min_refresh=min_refresh)
    cluster.backend.put("secret", "app/db", values or {"password": "pw-1"})
    cluster.add_source(spec=spec)
    cluster.start()
    return cluster


def test_an_interval_below_the_operators_minimum_is_raised_and_status_says_so() -> None:
    cluster = started({**vault_spec(), "refresh": {"interval": "1s", "jitter": 0}}, min_refresh=10.0)
    delay = cluster.sync_now()
    assert delay == 10.0
    message = cluster.ready()["message"]
    assert "below the operator's minimum of 10s" in message and cluster.ready()["reason"] == keys.SYNCED
    cluster.kube.requests.clear()
    cluster.sync_now()
    assert cluster.kube.requests == []  # said once: the same message writes no status again


def test_the_longest_interval_is_scheduled_without_overflow() -> None:
    cluster = started({**vault_spec(), "refresh": {"interval": "3660d", "jitter": 0.5}})
    delay = cluster.sync_now()
    assert delay is not None and delay <= 1.5 * 3660 * 86400 and cluster.ready()["reason"] == keys.SYNCED
    assert cluster.status()["nextSyncTime"] > cluster.status()["lastSyncTime"]


def test_syncs_asked_ahead_of_schedule_are_rate_limited_per_source() -> None:
    cluster = started(min_refresh=10.0)
    cluster.sync_now()
    reads = len(cluster.backend.calls)
    results = [cluster.sync_asked() for _ in range(5)]  # refresh-now / drift restores in a loop
    assert len(cluster.backend.calls) - reads == 3  # the burst
    assert results[3] is not None and 0 < results[3] <= 10.0  # then: wait for the next token
    cluster.clock.now += 10.0
    cluster.sync_asked()
    assert len(cluster.backend.calls) - reads == 4


def test_rotors_own_requests_are_not_limited() -> None:
    cluster = started(min_refresh=10.0)
    cluster.sync_now()
    reads = len(cluster.backend.calls)
    for _ in range(6):
        cluster.sync_now()  # SourcesPort.sync_now: a rotation propagating
    assert len(cluster.backend.calls) - reads == 6


def test_a_due_sync_is_never_held_back() -> None:
    cluster = started(min_refresh=10.0)
    delay = cluster.sync_now()
    assert delay is not None
    for _ in range(5):
        cluster.clock.now += delay
        delay = cluster.sync_asked()
        assert delay is not None and delay > 1000  # ran: the next is an interval (1h) away


def test_values_over_the_secret_size_limit_are_refused_before_any_write() -> None:
    cluster = started(big="x" * (1 << 20), small="y")
    cluster.sync_now()
    ready = cluster.ready()
    assert (ready["status"], ready["reason"]) == ("False", keys.INVALID_SPEC)
    assert "1 MiB" in ready["message"] and cluster.secret_writes() == []


def test_a_template_output_over_the_limit_is_a_template_error() -> None:
    spec = vault_spec(template={"data": {"x": "{% for i in range(2000) %}{{ values.password }}{% endfor %}"}})
    cluster = started(spec, password="p" * 1000)
    cluster.sync_now()
    ready = cluster.ready()
    assert ready["reason"] == keys.TEMPLATE_ERROR and "larger than" in ready["message"]
    assert cluster.secret_writes() == []


HOSTILE = {
    "value-indexed": "{{ values[values.password] }}",
    "attribute-of-value": "{{ values.password.nope }}",
    "filter-on-value": "{{ values.password | int + [] }}",
    "b64-of-value": "{{ values.password | b64decode }}",
    "map-by-value": "{{ values.password | map(values.password) | list }}",
    "format-with-value": "{{ '%d' % values.password }}",
    "dict-of-value": "{{ {}[values.password] }}",
    "include-value": "{% include values.password %}",
    "nested-index": "{{ values[values.password ~ values.password] }}",
}


def test_no_hostile_template_puts_a_value_in_status_events_or_logs(caplog: Any) -> None:
    caplog.set_level("DEBUG")
    for name, text in HOSTILE.items():
        cluster = started(vault_spec(template={"data": {"out": text}}), password=CANARY)
        cluster.sync_now()
        ready = cluster.ready()
        assert ready["reason"] == keys.TEMPLATE_ERROR, (name, ready)
        assert "spec.target.template.data['out']" in ready["message"], name
        seen = str(cluster.kube.get("secretsources", NS, "db")) + str(cluster.kube.events)
        assert CANARY not in seen, name
    assert CANARY not in caplog.text


def test_an_unexpected_backend_error_reports_its_class_never_its_message(caplog: Any) -> None:
    cluster = started()

    async def broken(namespace: str, spec: Any) -> Any:
        raise UnicodeEncodeError("utf-8", CANARY, 0, 1, "surrogates not allowed")  # quotes the value

    cluster.backend.fetch = broken  # type: ignore[method-assign]
    assert cluster.sync_now() is not None  # a status and a retry, not an exception out of the handler
    ready = cluster.ready()
    assert (ready["status"], ready["reason"]) == ("False", keys.BACKEND_UNAVAILABLE)
    assert "UnicodeEncodeError" in ready["message"]
    assert CANARY not in str(cluster.kube.get("secretsources", NS, "db")) + str(cluster.kube.events) + caplog.text
