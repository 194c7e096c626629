"""The webhook's view of SecretSources: a standby (empty view) and an active replica whose view lags
both answer from the API server; a yes from the active view costs no request."""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace
from typing import Any, cast

from rotor.api import keys
from rotor.engines.secretsource.view import SyncView
from rotor.handlers.delivery import source_views
from rotor.planning.injection import SourceView
from rotor.wiring import Runtime
from tests.fakes.kube import FakeKube

KEY = b"k" * 32
READY = {"conditions": [{"type": keys.READY, "status": "True", "reason": keys.SYNCED, "message": "ok"}]}


def source(name: str, status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource",
            "metadata": {"namespace": "team", "name": name, **meta},
            "spec": {"provider": "vault", "serviceAccountName": "app", "target": {"name": f"{name}-creds"},
                     "vault": {"path": f"team/{name}", "role": "r"}},
            "status": status or {}}


def cluster() -> FakeKube:
    kube = FakeKube()
    kube.put("secretsources", source("db", READY))
    kube.put("secretsources", source("new"))  # not synced yet
    kube.put("secrets", {"metadata": {"namespace": "team", "name": "db-creds", "labels": {keys.SOURCE_LABEL: "db"}},
                         "type": "Opaque",
                         "data": {"password": base64.b64encode(b"s3cret").decode()}})
    return kube


def runtime(kube: FakeKube, view: SyncView, *, active: bool | None) -> Runtime:
    gate = None if active is None else asyncio.Event()
    if gate is not None and active:
        gate.set()
    return cast(Runtime, SimpleNamespace(gate=gate, sync=view, kube=kube))


def answer(rt: Runtime, *names: str) -> tuple[dict[str, SourceView], str | None]:
    return asyncio.run(source_views(rt, "team", names))


def test_a_standby_with_an_empty_view_answers_from_the_api_server() -> None:
    kube = cluster()
    views, problem = answer(runtime(kube, SyncView(KEY), active=False), "db", "new", "nope")
    assert problem is None
    assert views["db"].exists and views["db"].ready and views["db"].target == "db-creds"
    assert views["db"].keys == ("password",)
    assert views["new"].exists and not views["new"].ready
    assert not views["nope"].exists
    assert ("list", "secretsources", "") in kube.requests


def test_the_active_view_answers_a_yes_without_a_request_and_checks_a_no() -> None:
    kube = cluster()
    view = SyncView(KEY)
    view.observe_source(None, kube.get("secretsources", "team", "db") or {})
    secret = asyncio.run(kube.read_secret("team", "db-creds"))
    view.remember("team", "db-creds", secret)
    kube.requests.clear()
    views, _ = answer(runtime(kube, view, active=True), "db")
    assert views["db"].ready and kube.requests == []
    # Created a moment ago, not in the view yet: the API server has it.
    views, _ = answer(runtime(kube, view, active=None), "db", "new")
    assert views["new"].exists and [r[:2] for r in kube.requests].count(("list", "secretsources")) == 1


def test_a_standby_that_cannot_reach_the_api_server_says_so() -> None:
    kube = cluster()
    kube.fail("list", "secretsources", 500)
    _, problem = answer(runtime(kube, SyncView(KEY), active=False), "db")
    assert problem is not None and "could not read" in problem and "does not exist" not in problem



def test_keys_come_only_from_the_sources_own_secret() -> None:
    kube = cluster()
    kube.put("secretsources", source("other", READY))
    kube.put("secrets", {"metadata": {"namespace": "team", "name": "other-creds"}, "type": "Opaque",
                         "data": {"token": base64.b64encode(b"x").decode()}})  # not written by Rotor for it
    views, _ = answer(runtime(kube, SyncView(KEY), active=False), "other")
    assert views["other"].exists and views["other"].keys is None
