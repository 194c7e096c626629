"""Flow control for backend calls: a token bucket, and single-flight collapsing of identical calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class TokenBucket:
    """At most `rate` acquisitions per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class SingleFlight(Generic[T]):
    """Concurrent calls with the same key share one execution and its result (or exception)."""

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(result, shared): shared is True when this caller rode on another's call. If the caller running
        FN is cancelled, the others run FN themselves: its cancellation is not theirs."""
        while (existing := self._inflight.get(key)) is not None:
            try:
                return await asyncio.shield(existing), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not existing.cancelled() or (task is not None and task.cancelling()):
                    raise  # this caller itself was cancelled
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await fn()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            del self._inflight[key]
