"""Polling as the change feed's backstop, on the fakes: while the feed vouches for every change since a
source's last read, its timer refresh waits instead of reading; an outage brings it back to its own
interval, and status says which it is (the ChangeFeed condition)."""

from __future__ import annotations

import random

from rotor.api import keys
from rotor.engines.secretsource.backstop import Backstop
from rotor.planning.conditions import get_condition

from .harness import NS, Cluster, run, vault_spec

DAY, HOUR = 86400.0, 3600.0


class FakeFeeds:
    """rotor.engines.ports.FeedHealth: the test says since when each connection's feed vouches."""

    def __init__(self, **intervals: float) -> None:
        self.intervals = intervals
        self.since: dict[str, float | None] = dict.fromkeys(intervals)
        self.quiet = False  # nothing heard for half the idle time

    def wants_record(self, connection: str) -> bool:
        return self.quiet

    def healthy_since(self, connection: str) -> float | None:
        return self.since.get(connection)

    def healthy_interval(self, connection: str) -> float | None:
        return self.intervals.get(connection)


def fed(spec: dict[str, object] | None = None) -> tuple[Cluster, FakeFeeds]:
    """A source on connection "default", read once, with the feed vouching since before that read."""
    cluster = Cluster()
    feeds = FakeFeeds(default=DAY)
    cluster.sync.backstop.feeds = feeds
    feeds.since["default"] = cluster.clock.now - 1
    cluster.backend.put("secret", "app/db", {"password": "pw-1"})
    cluster.add_source(spec=spec or {**vault_spec(), "refresh": {"interval": "1h", "jitter": 0}})
    cluster.start()
    cluster.sync_now()
    return cluster, feeds


def timer_run(cluster: Cluster) -> float | None:
    """The scheduler running the source when its own delay is up (nothing asked for it)."""
    state = cluster.sync.sources[(NS, "db")]
    assert state.next_due is not None
    cluster.clock.now = max(cluster.clock.now, state.next_due)
    return run(cluster.sync.sync((NS, "db")))


def feed_condition(cluster: Cluster) -> dict[str, object]:
    return get_condition(cluster.status().get("conditions"), keys.CHANGE_FEED) or {}


def test_while_the_feed_vouches_a_timer_refresh_waits_up_to_the_healthy_interval() -> None:
    cluster, _ = fed()
    reads = len(cluster.backend.calls)
    read_at = cluster.clock.now
    waits = [timer_run(cluster) for _ in range(23)]  # hops of at most the own interval
    assert waits == [HOUR] * 23 and len(cluster.backend.calls) == reads
    assert timer_run(cluster) == HOUR  # the 24th hour: a day after the read, Vault is read again
    assert len(cluster.backend.calls) == reads + 1 and cluster.clock.now == read_at + DAY


def test_a_quiet_feed_gets_one_read_to_hear_from_vault() -> None:
    cluster, feeds = fed()
    reads = len(cluster.backend.calls)
    feeds.quiet = True  # Rotor's waiting refreshes make no requests: a quiet Vault would go silent
    timer_run(cluster)
    feeds.quiet = False  # that read's audit record came in
    timer_run(cluster)
    assert len(cluster.backend.calls) == reads + 1


def test_a_feed_outage_means_the_next_timer_refresh_reads() -> None:
    cluster, feeds = fed()
    reads = len(cluster.backend.calls)
    timer_run(cluster)
    feeds.since["default"] = None  # down
    timer_run(cluster)
    assert len(cluster.backend.calls) == reads + 1
    feeds.since["default"] = cluster.clock.now + 5  # back, but a record may be lost before then
    timer_run(cluster)
    assert len(cluster.backend.calls) == reads + 2  # the read before it is not vouched for


def test_a_change_a_refresh_now_or_a_drift_restore_reads_whatever_the_feed_says() -> None:
    cluster, _ = fed()
    reads = len(cluster.backend.calls)
    cluster.clock.now += 60
    cluster.sync_now()  # the feed saw a change (SourcesPort.sync_now)
    run(cluster.kube.annotate("secretsources", NS, "db", {keys.REFRESH_NOW: "1"}))  # `rotor refresh`
    cluster.sync_asked()
    assert len(cluster.backend.calls) == reads + 2


def test_a_failed_read_is_retried_at_its_backoff_not_held_by_the_feed() -> None:
    cluster, _ = fed()
    cluster.backend.down = True
    cluster.clock.now += 60
    cluster.sync_now()
    reads = len(cluster.backend.calls)
    cluster.backend.down = False
    timer_run(cluster)
    assert len(cluster.backend.calls) == reads + 1 and cluster.data() == {"password": b"pw-1"}


def test_an_outage_brings_stretched_sources_back_to_their_own_interval_spread_out() -> None:
    cluster, feeds = fed()
    for name in ("b", "c", "d"):
        cluster.add_source(name, {**vault_spec(), "refresh": {"interval": "1h", "jitter": 0}})
        cluster.sync_now((NS, name))
    cluster.add_source("other", {**vault_spec(), "vault": {"path": "app/db", "role": "app", "connection": "other"}})
    cluster.sync_now((NS, "other"))
    for _ in range(5):
        timer_run(cluster)  # db: read 5 h ago, its next check in an hour
    now, sources = cluster.clock.now, cluster.sync.sources
    sources[(NS, "b")].next_due = now + 3000  # read 5 h ago too, its next check in 50 min
    sources[(NS, "c")].read_at, sources[(NS, "c")].next_due = now - 600, now + 3500  # read 10 min ago
    sources[(NS, "d")].next_due = now  # due now anyway
    sources[(NS, "other")].next_due = now + 3000  # another connection (it has no feed)
    feeds.since["default"] = None
    backstop = cluster.sync.backstop
    backstop._rng = random.Random(7)
    due = dict(backstop.catch_up(sources.values(), "default"))
    assert set(due) == {(NS, "db"), (NS, "b"), (NS, "c")}
    assert 0 <= due[(NS, "db")] < 60 and 0 <= due[(NS, "b")] < 60 and due[(NS, "db")] != due[(NS, "b")]
    assert due[(NS, "c")] == 3000  # its own interval after its read
    assert sources[(NS, "db")].next_due == now + due[(NS, "db")]
    reads = len(cluster.backend.calls)
    timer_run(cluster)
    assert len(cluster.backend.calls) == reads + 1


def test_status_says_whether_the_feed_is_up_naming_the_connection() -> None:
    cluster, feeds = fed()
    condition = feed_condition(cluster)
    assert (condition["status"], condition["reason"]) == ("True", keys.FEED_HEALTHY)
    assert "Vault connection default" in str(condition["message"]) and "pw-1" not in str(cluster.status())
    feeds.since["default"] = None
    timer_run(cluster)
    condition = feed_condition(cluster)
    assert (condition["status"], condition["reason"]) == ("False", keys.FEED_DOWN)
    assert "Vault connection default" in str(condition["message"])
    feeds.since["default"] = cluster.clock.now + 1  # back after that read: the next one is not vouched for
    timer_run(cluster)
    assert feed_condition(cluster)["reason"] == keys.FEED_HEALTHY
    cluster.kube.requests.clear()
    timer_run(cluster)  # nothing changed, nothing read: no status write either
    assert cluster.kube.requests == []


def test_without_a_feed_there_is_no_condition_and_every_timer_refresh_reads() -> None:
    cluster = Cluster()
    cluster.backend.put("secret", "app/db", {"password": "pw-1"})
    cluster.add_source()
    cluster.start()
    cluster.sync_now()
    reads = len(cluster.backend.calls)
    timer_run(cluster)
    assert len(cluster.backend.calls) == reads + 1 and feed_condition(cluster) == {}
    assert Backstop(FakeFeeds(default=DAY)).connection(None) is None


def test_a_refresh_that_waits_still_brings_the_condition_up_to_date() -> None:
    cluster, feeds = fed()
    vouched = feeds.since["default"]
    feeds.since["default"] = None  # silent past idle_seconds: down, its vouching point unchanged
    timer_run(cluster)
    assert feed_condition(cluster)["reason"] == keys.FEED_DOWN
    feeds.since["default"] = vouched  # records again: it vouches for that read too
    reads = len(cluster.backend.calls)
    cluster.kube.requests.clear()
    timer_run(cluster)
    assert len(cluster.backend.calls) == reads  # nothing read
    assert feed_condition(cluster)["reason"] == keys.FEED_HEALTHY
    assert cluster.kube.requests == [("patch", "secretsources/status", "db")]
