"""From changed paths to syncs: collect a burst, find the sources reading those paths, sync them now.

The paths pending are a bounded set (a flood of distinct paths past the bound is dropped and counted as
a fall-back to polling). Matching walks the sources once per flush (planning.changefeed.matching), so a
source created a moment before a write is never missed; the syncs go through the Sources port, i.e. the
sync engine's scheduler: single-flight per source, and a sync already running runs once more after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from rotor.engines.changefeed.state import FeedState
from rotor.engines.ports import Sources, SourceView
from rotor.observability.metrics import FEED_SYNCS
from rotor.planning.changefeed import Change, flush_delay, matching, targets

log = logging.getLogger("rotor.changefeed")

MAX_PENDING = 10_000  # distinct changed paths held between flushes


class FeedWorker:
    """One Vault connection's changes -> `Sources.sync_now` of each source that reads a changed path."""

    def __init__(self, state: FeedState, sources: Sources, listing: Callable[[], Iterable[SourceView]], *,
                 namespace: str | None = None, quiet: float = 0.1, max_wait: float = 0.5,
                 gate: asyncio.Event | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.state, self.sources, self.listing = state, sources, listing
        self.namespace, self.quiet, self.max_wait = namespace, quiet, max_wait
        self.gate, self.clock = gate, clock
        self.pending: set[str] = set()
        self._first = self._last = 0.0
        self._wake = asyncio.Event()

    def offer(self, change: Change) -> None:
        """A change the listener read (called from the event loop, never blocks)."""
        now = self.clock()
        if change.path not in self.pending:
            if len(self.pending) >= MAX_PENDING:
                self.state.dropped(now, 1)
                return
            if not self.pending:
                self._first = now
            self.pending.add(change.path)
        self._last = now
        self._wake.set()

    async def run(self) -> None:
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = flush_delay(self._first, self._last, self.clock(), quiet=self.quiet, max_wait=self.max_wait)
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            try:
                self.flush()
            except Exception:  # those changes are lost: the feed stops vouching for them, polling covers them
                log.exception("change feed of Vault connection %s: acting on changes failed", self.state.connection)
                self.state.dropped(self.clock(), 1)

    def flush(self) -> int:
        """Sync now every source that reads a pending path; returns how many were asked for."""
        paths, self.pending = self.pending, set()
        if self.gate is not None and not self.gate.is_set():
            return 0  # a standby replica acts on nothing (it normally does not even listen)
        changed = targets(paths, self.namespace)
        if not changed:
            return 0
        asked = 0
        for namespace, name in matching(self.listing(), self.state.connection, changed):
            if self.sources.source(namespace, name) is None:
                continue  # being deleted
            self.sources.sync_now(namespace, name)
            asked += 1
        if asked:
            FEED_SYNCS.labels(self.state.connection).inc(asked)
            log.debug("change feed of Vault connection %s: %d changed paths, %d SecretSources to sync",
                      self.state.connection, len(paths), asked)
        return asked
