"""One refresh scheduler for every SecretSource: a heap ordered by due time, drained by workers.

Thousands of sources cost one heap entry each instead of one timer task each. A key is never
worked on by two workers at once; asking for a key while it runs re-runs it right after.

An optional gate (an asyncio.Event) holds the workers while it is clear: no key is taken, keys stay
scheduled and run once it is set again. A run already under way finishes. The operator clears it
while this replica is a standby (peering); without a gate the scheduler always works.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

from rotor.observability.metrics import QUEUE_DEPTH, QUEUE_DUE

log = logging.getLogger("rotor.engines.scheduler")

# work(key) -> seconds until the key is due again, or None to drop it.
Work = Callable[[Hashable], Awaitable[float | None]]


class RefreshScheduler:
    def __init__(self, work: Work, *, workers: int = 16, clock: Callable[[], float] = time.monotonic,
                 gate: asyncio.Event | None = None, gauges: bool = True) -> None:
        self._work = work
        self._gauges = gauges  # the queue gauges describe the SecretSource scheduler only
        self._gate = gate
        self._workers = workers
        self._clock = clock
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._running: set[Hashable] = set()
        self._rerun: set[Hashable] = set()
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._due_gauge_at = float("-inf")

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, key: Hashable, delay: float = 0.0) -> None:
        """Run KEY after DELAY seconds; an earlier existing due time wins."""
        if key in self._running and delay <= 0:
            self._rerun.add(key)
            return
        due = self._clock() + max(0.0, delay)
        current = self._due.get(key)
        if current is not None and current <= due and key not in self._running:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        if self._gauges:
            QUEUE_DEPTH.set(len(self._due))
        self._wake.set()

    def remove(self, key: Hashable) -> None:
        self._due.pop(key, None)  # its heap entry becomes stale and is skipped
        self._rerun.discard(key)
        if self._gauges:
            QUEUE_DEPTH.set(len(self._due))

    def due_count(self) -> int:
        now = self._clock()
        return sum(1 for due in self._due.values() if due <= now)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"rotor-refresh-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _next(self) -> Hashable:
        while True:
            if self._gate is not None and not self._gate.is_set():
                await self._gate.wait()
                continue
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                due, _, key = heapq.heappop(self._heap)
                if self._due.get(key) != due:
                    continue  # stale: rescheduled or removed since
                if key in self._running:
                    self._rerun.add(key)
                    continue
                del self._due[key]
                self._running.add(key)
                if self._gauges:
                    QUEUE_DEPTH.set(len(self._due))
                if self._gauges and now - self._due_gauge_at >= 1.0:  # counting is O(heap): once a second
                    self._due_gauge_at = now
                    QUEUE_DUE.set(self.due_count())
                return key
            if self._gauges:
                QUEUE_DUE.set(0)  # nothing left is due before the heap's top
            timeout = (self._heap[0][0] - now) if self._heap else None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _worker(self) -> None:
        while True:
            key = await self._next()
            delay: float | None = 60.0
            try:
                delay = await self._work(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("refresh of %s failed unexpectedly; retrying in 60s", key)
            finally:
                self._running.discard(key)
            if key in self._rerun:
                self._rerun.discard(key)
                self.schedule(key, 0.0)
            elif delay is not None:
                self.schedule(key, delay)
