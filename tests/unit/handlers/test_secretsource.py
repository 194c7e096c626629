"""The SecretSource handler on Rotor's own feed: every view gets each event and the sync is scheduled; a
bug about one source sets its Ready=False (InternalError, no error text) and the feed goes on; a
paused replica writes nothing, not even that."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, cast

import pytest

from rotor.api import keys
from rotor.engines.delivery.view import ReloadView
from rotor.engines.scheduler import RefreshScheduler
from rotor.engines.sourcefeed import SourceFeed
from rotor.handlers.secretsource import source_event
from rotor.wiring import Runtime
from tests.unit.engines.secretsource.harness import NS, Cluster


async def idle(_: Any) -> float | None:
    return None


def runtime_for(cluster: Cluster, gate: asyncio.Event | None = None) -> Runtime:
    """The parts of the runtime the handler reaches, real views and schedulers (not started)."""
    return cast(Runtime, SimpleNamespace(
        kube=cluster.kube, gate=gate, sync=cluster.sync, sync_scheduler=RefreshScheduler(idle, gate=gate),
        reloader=SimpleNamespace(view=ReloadView(b"k" * 32, clock=lambda: 0.0, wake=lambda: None)),
        incidents=SimpleNamespace(for_source=lambda namespace, name: []),
        incident_scheduler=RefreshScheduler(idle, gate=gate, gauges=False)))


def scheduled(rt: Runtime) -> list[Any]:
    due = []
    while (key := rt.sync_scheduler.take_due()) is not None:
        due.append(key)
    return due


def run_feed(rt: Runtime, then: Any = None) -> None:
    """The feed as rotor.wiring builds it, over the cluster's SecretSources; THEN(): changes after the listing."""
    async def scenario() -> None:
        feed = SourceFeed(rt.kube, [NS], handle=lambda t, body: source_event(rt, t, body), relisted=lambda: None)
        feed.start()
        await asyncio.wait_for(feed.listed.wait(), 5)
        for _ in range(20):
            await asyncio.sleep(0)
        if then is not None:
            then()
            for _ in range(20):
                await asyncio.sleep(0)
        await feed.stop()

    asyncio.run(scenario())


def test_every_view_gets_the_events_and_a_new_or_edited_source_is_scheduled() -> None:
    cluster = Cluster()
    cluster.live = False  # the feed carries the events, not the harness
    cluster.add_source("db")
    rt = runtime_for(cluster)
    run_feed(rt)
    assert scheduled(rt) == [(NS, "db")]
    assert rt.reloader.view.targets[(NS, "db")] == "db"

    def edit_then_delete() -> None:
        cluster.edit_spec("db", name="db-creds")
        assert (NS, "db") in rt.sync.sources
        asyncio.get_running_loop().create_task(cluster.kube.delete_object("secretsources", NS, "db"))

    run_feed(rt, edit_then_delete)
    assert rt.reloader.view.targets == {} and (NS, "db") not in rt.sync.sources
    assert scheduled(rt) == [], "a deleted source leaves its scheduler"


def _buggy(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the sync view about source "bad" only (its error text must never reach the object)."""
    observe = cluster.sync.observe_source

    def buggy(event_type: str | None, body: Mapping[str, Any]) -> Any:
        if body["metadata"]["name"] == "bad":
            raise OverflowError("date value out of range: s3cret")
        return observe(event_type, body)

    monkeypatch.setattr(cluster.sync, "observe_source", buggy)


def test_a_bug_about_one_source_sets_its_ready_condition_and_the_feed_goes_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cluster = Cluster()
    cluster.live = False
    cluster.add_source("bad")
    _buggy(cluster, monkeypatch)
    rt = runtime_for(cluster)
    run_feed(rt, lambda: cluster.add_source("good"))
    ready = cluster.ready("bad")
    assert ready["status"] == "False" and ready["reason"] == keys.INTERNAL_ERROR
    assert "SecretSource team-a/bad" in ready["message"] and "OverflowError" in ready["message"]
    assert "s3cret" not in str(cluster.kube.get("secretsources", NS, "bad")) + str(cluster.kube.events)
    assert scheduled(rt) == [(NS, "good")]
    assert "failed unexpectedly on SecretSource team-a/bad" in caplog.text


def test_a_paused_replica_keeps_its_views_and_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster()
    cluster.live = False
    cluster.add_source("bad")
    cluster.add_source("db")
    _buggy(cluster, monkeypatch)
    cluster.kube.requests.clear()
    rt = runtime_for(cluster, gate=asyncio.Event())  # clear: another replica is active
    run_feed(rt)
    assert [r for r in cluster.kube.writes() if r[0] != "watch"] == [] and cluster.kube.events == []
    assert (NS, "db") in rt.sync.sources and len(rt.sync_scheduler) == 1  # scheduled, held by the gate
