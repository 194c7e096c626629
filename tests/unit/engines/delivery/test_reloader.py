"""The reloader on the fake cluster: batches, rate limits, adoption, consumer counts, polling."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import cast

from rotor.api import keys
from rotor.engines.delivery.worker import Reloader
from rotor.kube import Kube
from rotor.planning.reload import Applied, RateLimits
from tests.fakes.kube import FakeKube
from tests.unit.engines.delivery.harness import D1, D2, D3, HMAC_KEY, NS, WINDOW, Cluster


def adopted(c: Cluster) -> Cluster:
    """db (via SecretSource db) and api feed Deployment web, which Rotor has adopted."""
    c.source("db", "db-credentials")
    c.managed_secret("db-credentials", D1)
    c.managed_secret("api", D1)
    c.deployment("web", inject="db", reload_on="api")
    c.step()
    return c


def test_first_sight_adopts_without_a_restart() -> None:
    c = adopted(Cluster())
    assert c.adoptions() == ["web"] and c.restarts() == []
    assert c.generation("web") == 1 and c.template_hash("web") is None  # no rollout
    body = c.kube.get("deployments", NS, "web")
    assert body is not None
    record = Applied.decode(body["metadata"]["annotations"][keys.APPLIED])
    assert record is not None and set(record.secrets) == {"api", "db-credentials"}
    c.step()
    c.step()
    assert c.patches == [("web", c.patches[0][1])]  # the record came back through the watch: nothing more


def test_a_batch_of_changes_restarts_each_workload_once() -> None:
    c = adopted(Cluster())
    c.deployment("worker", reload_on="api")
    c.step()
    c.patches.clear()
    c.managed_secret("db-credentials", D2)
    c.step(WINDOW / 2)  # still changing: the batch waits until it is quiet
    c.managed_secret("api", D2)
    c.step(WINDOW / 2)
    assert c.restarts() == []
    c.step(WINDOW / 2)
    assert sorted(c.restarts()) == ["web", "worker"]
    assert c.generation("web") == 2 and c.template_hash("web") is not None
    # The restart's own watch event, replays and a leader change bring the same digests: nothing rolls.
    for name in ("db-credentials", "api"):
        c.managed_secret(name, D2)
    c.step()
    c.step()
    assert sorted(c.restarts()) == ["web", "worker"]


def test_a_steady_trickle_of_changes_still_flushes() -> None:
    c = adopted(Cluster())
    c.patches.clear()
    for i in range(8):
        assert c.restarts() == []
        c.managed_secret("api", (D2, D3)[i % 2])
        c.step(WINDOW - 1)  # never quiet for a whole window
    assert c.restarts() == ["web"]  # flushed at max_wait (six windows)


def test_restarts_over_the_rate_limit_are_deferred_not_dropped() -> None:
    c = Cluster(RateLimits(per_namespace=2, cluster=10, window=60))
    c.managed_secret("shared", D1)
    for name in ("a", "b", "c"):
        c.deployment(name, reload_on="shared")
    c.step()
    c.patches.clear()
    c.managed_secret("shared", D2)
    c.step()
    assert c.restarts() == ["a", "b"]
    c.step(30)
    assert c.restarts() == ["a", "b"]  # the window still holds two restarts in this namespace
    c.step(30)
    assert c.restarts() == ["a", "b", "c"]
    c.step(60)
    assert c.restarts() == ["a", "b", "c"]


def test_a_deferred_workload_that_is_deleted_is_forgotten() -> None:
    c = Cluster(RateLimits(per_namespace=1, cluster=10, window=60))
    c.managed_secret("shared", D1)
    for name in ("a", "b"):
        c.deployment(name, reload_on="shared")
    c.step()
    c.patches.clear()
    c.managed_secret("shared", D2)
    c.step()
    assert c.restarts() == ["a"]
    asyncio.run(c.kube.delete_object("deployments", NS, "b"))
    c.step(60)
    assert c.restarts() == ["a"]


def test_a_secret_deleted_and_recreated_waits_then_restarts() -> None:
    c = adopted(Cluster())
    c.patches.clear()
    asyncio.run(c.kube.delete_secret(NS, "api"))
    c.step()
    assert c.patches == []  # pods cannot start without it: a deletion is no new value to read
    c.managed_secret("api", D2)
    c.step()
    assert c.restarts() == ["web"]


def test_a_patch_that_loses_a_race_is_planned_again() -> None:
    c = adopted(Cluster())
    c.patches.clear()
    c.managed_secret("api", D2)
    c.kube.fail("patch", "deployments", 409)
    c.step()
    assert c.restarts() == []
    c.step()
    assert c.restarts() == ["web"]


def test_workloads_that_read_files_live_are_only_recorded() -> None:
    c = Cluster()
    c.managed_secret("tls", D1)
    c.deployment("proxy", reload_on="tls")
    body = c.kube.get("deployments", NS, "proxy")
    assert body is not None
    body["metadata"]["annotations"][keys.RELOAD] = "never"
    c.kube.put("deployments", body)
    c.step()
    c.managed_secret("tls", D2)
    c.step()
    assert c.restarts() == [] and c.adoptions() == ["proxy", "proxy"]


def test_an_injected_source_not_seen_yet_is_waited_for() -> None:
    c = Cluster()
    c.managed_secret("db-credentials", D1)
    c.deployment("web", inject="db")
    c.step()
    assert c.patches == []  # which Secret does "db" write? not known: do not guess
    c.source("db", "db-credentials")
    c.step()
    assert c.adoptions() == ["web"]


def test_consumer_counts_are_written_only_when_they_change() -> None:
    c = adopted(Cluster())
    assert c.consumers() == {"current": 1, "stale": 0}
    writes = len(c.status_writes())
    c.rolled_out("web")  # a status event: the namespace is recounted, the counts did not move
    c.step()
    c.step()
    assert len(c.status_writes()) == writes == 1
    c.managed_secret("db-credentials", D2)
    c.step()
    assert c.restarts() == ["web"] and c.consumers() == {"current": 0, "stale": 1}  # rolling
    c.rolled_out("web")
    c.step()
    assert c.consumers() == {"current": 1, "stale": 0} and len(c.status_writes()) == 3


def test_sources_nobody_reads_get_no_status_write() -> None:
    c = Cluster()
    c.source("lonely", "lonely")
    c.managed_secret("lonely", D1)
    c.step()
    assert c.status_writes("lonely") == [] and c.kube.writes() == []


def test_unmanaged_secrets_are_polled() -> None:
    c = Cluster(poll_seconds=30)
    c.plain_secret("legacy", {"password": base64.b64encode(b"one").decode()})
    c.deployment("app", reload_on="legacy")
    c.step()
    assert c.adoptions() == ["app"]
    c.plain_secret("legacy", {"password": base64.b64encode(b"two").decode()})
    c.step()  # not polled yet: no watch on Secrets Rotor does not manage
    assert c.restarts() == []
    c.step(30)
    c.step()
    assert c.restarts() == ["app"]
    assert ("list", "secrets", "") in c.kube.requests


def test_the_loop_runs_rounds_and_stands_by_behind_the_gate() -> None:
    async def main() -> list[str]:
        kube = FakeKube()
        gate = asyncio.Event()
        reloader = Reloader(cast(Kube, kube), HMAC_KEY, window=0.02, poll_seconds=0, gate=gate,
                            limits=RateLimits(per_namespace=5, cluster=5, window=60), clock=time.monotonic)
        kube.subscribe(lambda event, plural, body: reloader.view.observe_workload("Deployment", event, body)
                       if plural == "deployments" else None)
        reloader.start()
        try:
            kube.put("secrets", {"metadata": {"name": "s", "namespace": NS, "annotations": {keys.DATA_HMAC: D1}}})
            kube.put("deployments", {"metadata": {"name": "w", "namespace": NS, "annotations": {keys.RELOAD_ON: "s"}},
                                     "spec": {"template": {"spec": {}}}})
            await asyncio.sleep(0.1)
            assert kube.writes() == []  # a standby replica does nothing
            gate.set()
            for _ in range(100):
                await asyncio.sleep(0.02)
                if kube.writes():
                    break
        finally:
            await reloader.stop()
        return [name for _, _, name in kube.writes()]

    assert asyncio.run(main()) == ["w"]
