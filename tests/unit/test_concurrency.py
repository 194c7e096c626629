"""Flow control for backend calls: single-flight collapsing and the token bucket."""

from __future__ import annotations

import asyncio
import time

import pytest

from rotor.concurrency import SingleFlight, TokenBucket


def test_concurrent_calls_with_one_key_share_one_execution() -> None:
    runs = 0

    async def slow() -> int:
        nonlocal runs
        runs += 1
        mine = runs
        await asyncio.sleep(0.02)
        return mine

    async def main() -> None:
        flight: SingleFlight[int] = SingleFlight()
        results = await asyncio.gather(*(flight.do("k", slow) for _ in range(5)), flight.do("other", slow))
        assert sorted(results) == [(1, False), (1, True), (1, True), (1, True), (1, True), (2, False)]
        assert await flight.do("k", slow) == (3, False)  # finished calls are not cached

    asyncio.run(main())


def test_an_error_reaches_every_caller_of_the_execution() -> None:
    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise ValueError("no")

    async def main() -> None:
        flight: SingleFlight[int] = SingleFlight()
        results = await asyncio.gather(flight.do("k", fail), flight.do("k", fail), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)

    asyncio.run(main())


def test_when_the_running_caller_is_cancelled_the_others_run_it_themselves() -> None:
    runs = 0

    async def slow() -> int:
        nonlocal runs
        runs += 1
        mine = runs
        await asyncio.sleep(0.05)
        return mine

    async def main() -> None:
        flight: SingleFlight[int] = SingleFlight()
        leader = asyncio.create_task(flight.do("k", slow))
        await asyncio.sleep(0.01)
        follower = asyncio.create_task(flight.do("k", slow))
        await asyncio.sleep(0.01)
        leader.cancel()
        assert await follower == (2, False)
        with pytest.raises(asyncio.CancelledError):
            await leader

    asyncio.run(main())


def test_a_cancelled_follower_leaves_the_execution_running() -> None:
    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "done"

    async def main() -> None:
        flight: SingleFlight[str] = SingleFlight()
        leader = asyncio.create_task(flight.do("k", slow))
        await asyncio.sleep(0.01)
        follower = asyncio.create_task(flight.do("k", slow))
        await asyncio.sleep(0.01)
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
        assert await leader == ("done", False)

    asyncio.run(main())


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    async def main() -> float:
        bucket = TokenBucket(rate=100, burst=3)
        started = time.monotonic()
        for _ in range(3 + 5):
            await bucket.acquire()
        return time.monotonic() - started

    assert 0.04 <= asyncio.run(main()) < 1.0  # the burst is free, then 5 at 100/s
