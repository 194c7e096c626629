"""The managed-Secret feed: metadata only, a read by name only for a Secret a source writes into whose
resourceVersion Rotor did not write; forged labels cost no read; a 410 lists again and says so."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, cast

from rotor.api import keys
from rotor.engines.delivery.view import ReloadView
from rotor.engines.secretfeed import MetadataWatch, SecretFeed
from tests.unit.engines.secretsource.harness import NS, Cluster

SELECTOR = f"{keys.MANAGED_BY}={keys.MANAGED_BY_VALUE}"


def forged(cluster: Cluster, name: str, size: int = 1024) -> None:
    """A tenant's own Secret wearing Rotor's label (anyone who may create Secrets can)."""
    cluster.kube.put("secrets", {"metadata": {"name": name, "namespace": NS,
                                              "labels": {keys.MANAGED_BY: keys.MANAGED_BY_VALUE}},
                                 "type": "Opaque", "data": {"blob": base64.b64encode(b"x" * size).decode()}})


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def fed_cluster() -> Cluster:
    """One source "db" on the fakes, its Secret events carried by a SecretFeed (not the harness) from now on."""
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", {"password": "pw-1"})
    cluster.add_source("db")
    cluster.live = False
    cluster.start()
    return cluster


def feed_for(cluster: Cluster, drifted: list[tuple[str, str]], relists: list[int],
             reload_view: ReloadView | None = None) -> SecretFeed:
    def changed(event_type: str | None, body: Any, whole: bool) -> None:
        source = cluster.sync.observe_secret(event_type, body, whole)
        if source is not None:
            drifted.append(source)

    observers: list[Any] = [changed] + ([reload_view.observe_secret] if reload_view is not None else [])
    return SecretFeed(cast(MetadataWatch, cluster.kube), SELECTOR, [NS], wants_data=cluster.sync.wants_data,
                      observers=observers, relisted=lambda: relists.append(1))


def test_forged_labels_cost_metadata_and_no_read_while_a_tenants_edit_of_a_managed_secret_is_read_once() -> None:
    cluster = fed_cluster()
    cluster.sync_now()
    assert cluster.data() is not None
    for n in range(50):
        forged(cluster, f"forged-{n}", 64 * 1024)
    drifted: list[tuple[str, str]] = []
    reload_view = ReloadView(b"k" * 32, clock=lambda: 0.0, wake=lambda: None)

    async def scenario() -> None:
        feed = feed_for(cluster, drifted, [], reload_view)
        feed.start()
        await asyncio.wait_for(feed.listed.wait(), 5)
        await settle()
        assert feed.reads == 0, "a listing read Secrets whole"
        forged(cluster, "forged-0", 128 * 1024)  # the tenant rewrites its own forged Secret: still no read
        await settle()
        assert feed.reads == 0
        # The tenant edits the Secret the source writes: a new resourceVersion Rotor did not write.
        secret = cluster.kube.get("secrets", NS, "db")
        assert secret is not None
        cluster.kube.put("secrets", {**secret, "data": {"password": base64.b64encode(b"evil").decode()}})
        await settle()
        assert feed.reads == 1 and drifted == [(NS, "db")]
        await feed.stop()

    asyncio.run(scenario())
    # The reloader still has the managed Secret's digest (from its data-hmac annotation, no read).
    assert reload_view.digests[(NS, "db")].managed
    assert reload_view.digests[(NS, "db")].value == cluster.status()["dataHmac"]
    # What the view keeps of the forged ones: metadata, not values.
    held = cluster.sync.secrets[(NS, "forged-1")]
    assert held.metadata_only and not held.data


def test_the_echo_of_rotors_own_write_costs_no_read() -> None:
    cluster = fed_cluster()
    drifted: list[tuple[str, str]] = []

    async def scenario() -> None:
        feed = feed_for(cluster, drifted, [])
        feed.start()
        await asyncio.wait_for(feed.listed.wait(), 5)
        await cluster.sync.sync((NS, "db"))  # Rotor creates the Secret: the view remembers its response
        await settle()
        await feed.stop()
        assert feed.reads == 0 and drifted == []

    asyncio.run(scenario())


def test_an_expired_watch_lists_again_and_tells_the_relister() -> None:
    cluster = Cluster()
    cluster.live = False
    relists: list[int] = []

    async def scenario() -> None:
        feed = feed_for(cluster, [], relists)
        feed.start()
        await asyncio.wait_for(feed.listed.wait(), 5)
        await settle()
        lists = sum(1 for verb, resource, _ in cluster.kube.requests if (verb, resource) == ("list", "secrets"))
        cluster.kube.expire_watches()
        await settle()
        forged(cluster, "after-gap")
        await settle()
        await feed.stop()
        again = sum(1 for verb, resource, _ in cluster.kube.requests if (verb, resource) == ("list", "secrets"))
        assert again == lists + 1 and relists == [1]
        assert (NS, "after-gap") in cluster.sync.secrets  # the new watch delivers

    asyncio.run(scenario())


def test_a_paused_replica_reads_nothing_and_its_next_sync_reads_the_secret_first() -> None:
    cluster = fed_cluster()
    cluster.sync_now()
    gate = asyncio.Event()  # clear: another replica is active (peering)

    async def scenario() -> SecretFeed:
        feed = SecretFeed(cast(MetadataWatch, cluster.kube), SELECTOR, [NS], wants_data=cluster.sync.wants_data,
                          observers=[lambda t, b, w: cluster.sync.observe_secret(t, b, w)], relisted=lambda: None,
                          gate=gate)
        feed.start()
        await asyncio.wait_for(feed.listed.wait(), 5)
        secret = cluster.kube.get("secrets", NS, "db")
        assert secret is not None
        cluster.kube.put("secrets", {**secret, "data": {"password": base64.b64encode(b"other").decode()}})
        await settle()
        await feed.stop()
        return feed

    feed = asyncio.run(scenario())
    assert feed.reads == 0
    assert cluster.sync.secrets[(NS, "db")].metadata_only  # what it holds is no longer vouched for
    cluster.sync_now()  # after the resume: the sync reads the Secret and restores its value
    assert cluster.data() == {"password": b"pw-1"}
