"""`rotor inventory` on the fake cluster: what it lists, what it warns about, what it prints."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest

from rotor.engines.inventory.collect import collect
from rotor.engines.inventory.command import render
from rotor.kube import Kube, KubeError
from rotor.planning import times
from rotor.planning.podspec import WORKLOAD_KINDS
from tests.fakes.kube import FakeKube

USES = {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "db-credentials"}}]}],
        "imagePullSecrets": [{"name": "registry"}]}


def estate() -> FakeKube:
    kube = FakeKube()
    for ns in ("a", "b"):
        kube.put("namespaces", {"metadata": {"name": ns, "labels": {"rotor.dev/owner": f"team-{ns}"}}})
        kube.put("secretsources", {"metadata": {"name": "db", "namespace": ns},
                                   "spec": {"provider": "vault", "vault": {"path": "x"},
                                            "target": {"name": "db-credentials"}}})
        kube.put("secrets", {"metadata": {"name": "db-credentials", "namespace": ns,
                                          "labels": {"app.kubernetes.io/managed-by": "rotor"}},
                             "data": {"password": "c2VjcmV0"}})
        kube.put("secrets", {"metadata": {"name": "registry", "namespace": ns},
                             "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}})
    kube.put("deployments", {"metadata": {"name": "web", "namespace": "a"}, "spec": {"template": {"spec": USES}}})
    kube.put("cronjobs", {"metadata": {"name": "nightly", "namespace": "a"},
                          "spec": {"jobTemplate": {"spec": {"template": {"spec": USES}}}}})
    kube.put("pods", {"metadata": {"name": "debug", "namespace": "a"}, "spec": USES})
    kube.put("statefulsets", {"metadata": {"name": "db", "namespace": "b"}, "spec": {"template": {"spec": USES}}})
    return kube


def test_every_workload_kind_of_the_table_is_listed_in_each_namespace() -> None:
    kube = estate()
    read = asyncio.run(collect(cast(Kube, kube), ["a"]))
    assert read.warnings == []
    listed = {plural for verb, plural, _ in kube.requests if verb == "list"}
    assert {kind.plural for kind in WORKLOAD_KINDS} <= listed
    assert {"secretsources", "rotationpolicies", "leakincidents", "secrets"} <= listed
    assert [s.name for s in read.cluster.secrets] == ["db-credentials", "registry"]
    assert not hasattr(read.cluster.secrets[0], "data")  # metadata only
    rows = json.loads(render(read, output="json", unmanaged=False, include_system=False, now=times.now()))
    assert [(r["namespace"], r["owner"], r["consumers"]) for r in rows] == [
        ("a", "team-a", ["Deployment/web", "CronJob/nightly", "Pod/debug"])]
    unmanaged = json.loads(render(read, output="json", unmanaged=True, include_system=False, now=times.now()))
    assert [(r["secret"], r["consumers"]) for r in unmanaged] == [  # an image pull is a use
        ("registry", ["Deployment/web", "CronJob/nightly", "Pod/debug"])]


def test_the_whole_cluster() -> None:
    read = asyncio.run(collect(cast(Kube, estate()), None))
    rows = json.loads(render(read, output="json", unmanaged=False, include_system=False, now=times.now()))
    assert [(r["namespace"], r["consumers"]) for r in rows] == [
        ("a", ["Deployment/web", "CronJob/nightly", "Pod/debug"]), ("b", ["StatefulSet/db"])]


def test_kinds_not_served_or_not_allowed_are_warnings_not_failures() -> None:
    kube = estate()
    kube.fail("list", "leakincidents", 404)
    kube.fail("list", "daemonsets", 403)
    read = asyncio.run(collect(cast(Kube, kube), ["a"]))
    assert read.warnings == ["leakincidents in a: not served by this cluster (CRDs not installed?)",
                             "daemonsets in a: not allowed to list (Forbidden); results are incomplete"]
    assert len(read.cluster.sources) == 1
    kube.fail("list", "deployments", 500)
    with pytest.raises(KubeError):
        asyncio.run(collect(cast(Kube, kube), ["a"]))


def test_table_and_csv() -> None:
    read = asyncio.run(collect(cast(Kube, estate()), ["b"]))
    kwargs: dict[str, Any] = {"unmanaged": False, "include_system": False, "now": times.now()}
    table = render(read, output="table", **kwargs).splitlines()
    assert table[0].split()[:3] == ["NAMESPACE", "SOURCE", "OWNER"] and table[1].split()[:3] == ["b", "db", "team-b"]
    assert render(read, output="csv", **kwargs).splitlines()[1].startswith("b,db,team-b,")
