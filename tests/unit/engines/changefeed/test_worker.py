"""FeedWorker: changed paths -> one sync_now per source reading them, after a debounce, active replica only."""

from __future__ import annotations

import asyncio
from typing import Any

from rotor.engines.changefeed.state import FeedState
from rotor.engines.changefeed.worker import MAX_PENDING, FeedWorker
from rotor.planning.changefeed import Change

from .harness import FakeSources, vault_source


def _worker(sources: FakeSources, **kwargs: Any) -> FeedWorker:
    return FeedWorker(FeedState("default", 300.0), sources, sources.listing, **kwargs)


def test_a_burst_of_changes_syncs_each_reader_once() -> None:
    sources = FakeSources(vault_source("a", "db", "team-a/db"), vault_source("a", "db2", "team-a/db"),
                          vault_source("a", "api", "team-a/api"), vault_source("b", "x", "team-b/x"))
    worker = _worker(sources)
    for _ in range(5):
        worker.offer(Change("update", "secret/data/team-a/db"))
    worker.offer(Change("update", "secret/metadata/team-a/api"))
    worker.offer(Change("update", "secret/data/nobody/reads-this"))
    assert worker.flush() == 3
    assert sorted(sources.synced) == [("a", "api"), ("a", "db"), ("a", "db2")]
    assert worker.flush() == 0 and not worker.pending


def test_sources_being_deleted_and_other_connections_are_left_alone() -> None:
    sources = FakeSources(vault_source("a", "db", "team-a/db"),
                          vault_source("a", "elsewhere", "team-a/db", connection="other"))
    sources.deleting.add(("a", "db"))
    worker = _worker(sources)
    worker.offer(Change("update", "secret/data/team-a/db"))
    assert worker.flush() == 0 and sources.synced == []


def test_a_source_created_after_the_change_arrived_is_still_found() -> None:
    sources = FakeSources()
    worker = _worker(sources)
    worker.offer(Change("update", "secret/data/team-a/db"))
    new = vault_source("a", "db", "team-a/db")
    sources.by_key[("a", "db")] = new  # matching walks the sources at flush time, no stale index
    assert worker.flush() == 1


def test_a_standby_acts_on_nothing() -> None:
    gate = asyncio.Event()
    sources = FakeSources(vault_source("a", "db", "team-a/db"))
    worker = _worker(sources, gate=gate)
    worker.offer(Change("update", "secret/data/team-a/db"))
    assert worker.flush() == 0 and sources.synced == [] and not worker.pending
    gate.set()
    worker.offer(Change("update", "secret/data/team-a/db"))
    assert worker.flush() == 1


def test_too_many_distinct_paths_are_dropped_and_the_feed_stops_vouching() -> None:
    sources = FakeSources()
    worker = _worker(sources)
    worker.state.connected(0.0)
    for i in range(MAX_PENDING + 5):
        worker.offer(Change("update", f"secret/data/p{i}"))
    assert len(worker.pending) == MAX_PENDING
    assert worker.state.since is not None and worker.state.since > 0.0  # only reads from now are vouched for


def test_run_flushes_after_the_quiet_window() -> None:
    async def main() -> list[tuple[str, str]]:
        sources = FakeSources(vault_source("a", "db", "team-a/db"))
        worker = _worker(sources, quiet=0.05, max_wait=0.2)
        task = asyncio.create_task(worker.run())
        worker.offer(Change("update", "secret/data/team-a/db"))
        await asyncio.sleep(0.02)
        assert sources.synced == []  # still inside the window
        await asyncio.sleep(0.1)
        task.cancel()
        return sources.synced

    assert asyncio.run(main()) == [("a", "db")]
