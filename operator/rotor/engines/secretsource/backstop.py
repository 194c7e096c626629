"""Polling as the change feed's backstop (issue 19): while a Vault connection's change feed vouches for
every change, a source's timer refresh waits instead of reading Vault, up to the feed's healthy interval;
when the feed stops vouching, the sources it stretched are due again at their own interval at once.

The decisions are planning.changefeed's; the feed's health comes through the FeedHealth port (the change
feed engine, filled in by rotor.wiring). Only a timer refresh ever waits: a change the feed saw, a
refresh-now, a drift restore, a spec change and a retry after a failure read Vault as before.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rotor.api import keys
from rotor.api.common import parse_duration
from rotor.api.secretsource import SecretSourceSpec
from rotor.engines.ports import FeedHealth
from rotor.engines.secretsource.view import Key, SourceState
from rotor.observability.metrics import FEED_SKIPPED
from rotor.planning import times
from rotor.planning.changefeed import backstop_delay, feed_condition, outage_delay
from rotor.planning.conditions import get_condition, set_condition
from rotor.planning.sync_status import effective_interval


class Backstop:
    """What the feeds (FEEDS; None: no connection has one) mean for one source's timer refresh."""

    def __init__(self, feeds: FeedHealth | None = None, *, minimum: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.feeds, self.minimum, self.clock = feeds, minimum, clock
        self._rng = rng or random.Random()

    def connection(self, spec: SecretSourceSpec | None) -> str | None:
        """The Vault connection whose change feed covers a source of SPEC (a KV path), or None."""
        if (self.feeds is None or spec is None or spec.provider != "vault" or spec.vault is None
                or spec.vault.path is None):
            return None
        connection = spec.vault.connection
        return connection if self.feeds.healthy_interval(connection) is not None else None

    def interval(self, spec: SecretSourceSpec) -> float:
        return effective_interval(parse_duration(spec.refresh.interval).total_seconds(), self.minimum)

    def hold(self, state: SourceState, *, timer: bool) -> float | None:
        """Seconds STATE's refresh waits instead of reading (TIMER: its own schedule asked for it, nothing
        else did); None: read now."""
        connection = self.connection(state.spec)
        if not timer or connection is None or state.failures or state.spec is None:
            return None
        assert self.feeds is not None
        if self.feeds.wants_record(connection):
            return None  # a quiet Vault: this read's audit record keeps the feed from going idle
        now = self.clock()
        wait = backstop_delay(interval=self.interval(state.spec), last_read=state.read_at, now=now,
                              healthy_since=self.feeds.healthy_since(connection),
                              healthy_interval=self.feeds.healthy_interval(connection))
        if wait is not None:
            state.next_due = now + wait
            FEED_SKIPPED.labels(connection).inc()
        return wait

    def catch_up(self, sources: Iterable[SourceState], connection: str) -> Iterator[tuple[Key, float]]:
        """(key, delay) of each source on CONNECTION whose timer the feed stretched beyond its own
        interval: CONNECTION's feed stopped vouching (an outage, or records lost)."""
        now = self.clock()
        for state in sources:
            if (state.read_at is None or state.next_due is None or state.deleting or state.failures
                    or state.spec is None or self.connection(state.spec) != connection):
                continue
            delay = outage_delay(interval=self.interval(state.spec), last_read=state.read_at, now=now,
                                 u=self._rng.random())
            if now + delay < state.next_due:
                state.next_due = now + delay
                yield (state.namespace, state.name), delay

    def conditions(self, state: SourceState, conditions: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """CONDITIONS with STATE's ChangeFeed condition as of now; None if it would not change."""
        connection = self.connection(state.spec)
        old = get_condition(conditions, keys.CHANGE_FEED)
        if connection is None:
            return None if old is None else [c for c in conditions if c.get("type") != keys.CHANGE_FEED]
        assert self.feeds is not None
        status, reason, message = feed_condition(
            connection, healthy=self.feeds.healthy_since(connection) is not None,
            healthy_interval=self.feeds.healthy_interval(connection) or 0.0)
        if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (status, reason, message):
            return None
        return set_condition(conditions, type=keys.CHANGE_FEED, status=status, reason=reason, message=message,
                             now=times.now_iso(), generation=state.generation)
