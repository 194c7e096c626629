"""The reloader's view: what each watch event changes, and what it leaves alone."""

from __future__ import annotations

import base64
from typing import Any

from rotor.api import keys
from rotor.engines.delivery.view import Digest, ReloadView
from rotor.planning.hashing import data_hmac
from tests.unit.engines.delivery.harness import D1, D2, HMAC_KEY, NS


class Woken:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def fresh() -> tuple[ReloadView, Woken]:
    woken = Woken()
    return ReloadView(HMAC_KEY, clock=lambda: 10.0, wake=woken), woken


def secret(name: str, *, digest: str | None = None, data: dict[str, bytes] | None = None) -> dict[str, Any]:
    annotations = {keys.DATA_HMAC: digest} if digest else {}
    return {"metadata": {"name": name, "namespace": NS, "annotations": annotations,
                         "labels": {keys.MANAGED_BY: keys.MANAGED_BY_VALUE}},
            "type": "Opaque", "data": {k: base64.b64encode(v).decode() for k, v in (data or {}).items()}}


def deployment(name: str = "web", *, status: dict[str, Any] | None = None, **annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "annotations": annotations, "generation": 1},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {keys.INJECT_LABEL: "true"},
                                                              "annotations": {keys.SECRETS: "db"}},
                                                 "spec": {"containers": [{"name": "app"}]}}},
            "status": status if status is not None else {"observedGeneration": 1, "updatedReplicas": 1,
                                                         "replicas": 1}}


def test_first_sight_of_a_secret_is_no_change_but_a_new_digest_is() -> None:
    view, woken = fresh()
    view.observe_secret("ADDED", secret("db", digest=D1))
    assert view.digests[(NS, "db")] == Digest(D1, True) and view.first is None and woken.count == 0
    view.observe_secret("MODIFIED", secret("db", digest=D1))
    assert view.pending_secrets == set()
    view.observe_secret("MODIFIED", secret("db", digest=D2))
    assert view.pending_secrets == {(NS, "db")} and view.first == 10.0 and woken.count == 1
    view.observe_secret("DELETED", secret("db", digest=D2))
    assert view.digests[(NS, "db")].value is None


def test_a_secret_without_rotors_digest_is_digested_from_its_data() -> None:
    view, _ = fresh()
    view.observe_secret("ADDED", secret("plain", data={"k": b"v"}))
    assert view.digests[(NS, "plain")].value == data_hmac(HMAC_KEY, {"k": b"v"}, "Opaque")


def test_workloads_fold_into_plans_and_recounts() -> None:
    view, woken = fresh()
    view.observe_workload("Deployment", "ADDED", {"metadata": {"name": "plain", "namespace": NS}, "spec": {}})
    assert view.workloads == {} and woken.count == 0  # did not opt in
    view.observe_workload("Deployment", "ADDED", deployment())
    key = ("Deployment", NS, "web")
    assert view.pending_workloads == {key} and view.dirty == {NS}
    view.take_batch()
    view.take_dirty()
    view.observe_workload("Deployment", "MODIFIED", deployment(status={"observedGeneration": 0}))
    assert view.pending_workloads == set() and view.dirty == {NS}  # rollout state: recount, no replan
    view.take_dirty()
    view.observe_workload("Deployment", "MODIFIED", deployment(**{keys.RELOAD_ON: "extra"}))
    assert view.pending_workloads == {key}
    view.observe_workload("Deployment", "DELETED", deployment())
    assert view.workloads == {} and view.dirty == {NS}


def test_a_source_target_replans_the_workloads_injecting_it() -> None:
    view, _ = fresh()
    view.observe_workload("Deployment", "ADDED", deployment())
    view.take_batch()
    assert view.consumed(view.workloads[("Deployment", NS, "web")]) is None  # source not seen yet
    source = {"metadata": {"name": "db", "namespace": NS}, "spec": {"target": {"name": "db-credentials"}},
              "status": {"consumers": {"current": 1, "stale": 0}}}
    view.observe_source("ADDED", source)
    assert view.pending_workloads == {("Deployment", NS, "web")} and view.targets_in(NS) == {"db": "db-credentials"}
    assert view.reported[(NS, "db")] == {"current": 1, "stale": 0}
    assert view.consumed(view.workloads[("Deployment", NS, "web")]) == ("db-credentials",)
    view.take_batch()
    view.observe_source("MODIFIED", source)  # same target: nothing to replan
    assert view.pending_workloads == set()
    view.observe_source("DELETED", source)
    assert view.targets == {} and view.reported == {}


def test_the_batch_waits_for_quiet_and_starts_over_when_taken() -> None:
    view, _ = fresh()
    assert view.batch_delay(10.0, 5.0, 30.0) is None
    view.observe_secret("ADDED", secret("db", digest=D1))
    view.observe_secret("MODIFIED", secret("db", digest=D2))
    assert view.batch_delay(12.0, 5.0, 30.0) == 3.0
    assert view.take_batch() == ({(NS, "db")}, set())
    assert view.batch_delay(20.0, 5.0, 30.0) is None
